"""``archspec validate --format sarif``: diagnostics as a SARIF 2.1.0 log, for GitHub code scanning.

One rule per diagnostic code (with its title and help text from :mod:`archspec.codes`), one
result per diagnostic, located at file:line:col. Upload it with ``github/codeql-action/upload-sarif``
and spec problems show on the pull request's lines (see docs/review.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from . import __version__
from .codes import CODES, SEVERITY_OF_PREFIX, describe
from .errors import format_path

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"error": "error", "warning": "warning", "note": "note"}


def _rule(code: str) -> dict:
    title, help_text = describe(code)
    level = SEVERITY_OF_PREFIX.get(code[:1], "warning")
    return {
        "id": code,
        "name": "".join(w.capitalize() for w in code.replace("-", " ").split()),
        "shortDescription": {"text": title},
        "fullDescription": {"text": help_text},
        "help": {"text": help_text, "markdown": f"**{code}: {title}**\n\n{help_text}"},
        "defaultConfiguration": {"level": level},
    }


def _uri(file: str) -> str:
    p = Path(file)
    if p.is_absolute():
        return p.as_uri()
    return p.as_posix()


def sarif_log(results) -> dict:
    """The SARIF log (a dict) of checked specs (:class:`~archspec.pipeline.Checked`)."""
    diags = [d for r in results for d in r.diagnostics]
    codes = list(CODES) + sorted({d.code for d in diags} - set(CODES))
    index = {c: i for i, c in enumerate(codes)}
    out = []
    for d in diags:
        text = (f"{format_path(d.path)}: " if d.path else "") + d.message + (f" — {d.hint}" if d.hint else "")
        loc = {"physicalLocation": {"artifactLocation": {"uri": _uri(d.file or "<spec>")}}}
        if d.line:
            loc["physicalLocation"]["region"] = {"startLine": d.line, "startColumn": max(d.col, 1)}
        result = {"ruleId": d.code, "ruleIndex": index[d.code], "level": _LEVEL[d.severity],
                  "message": {"text": text}, "locations": [loc]}
        if d.path:
            result["locations"][0]["logicalLocations"] = [{"fullyQualifiedName": format_path(d.path),
                                                           "kind": "member"}]
        out.append(result)
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "archspec", "version": __version__, "semanticVersion": __version__,
                                "rules": [_rule(c) for c in codes]}},
            "columnKind": "unicodeCodePoints",
            "results": out,
        }],
    }


def render_sarif(results) -> str:
    return json.dumps(sarif_log(results), indent=2, ensure_ascii=False)
