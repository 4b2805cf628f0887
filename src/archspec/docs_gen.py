"""Render the reference tables of ``docs/spec.md`` from the spec language itself (torch-free).

The field tables come from :func:`archspec.spec.json_schema` (so the field docstrings of the
pydantic models are the single source of truth); the loss and metric tables come from the head
registry and :mod:`archspec.spec.metrics`. Each table lives between markers in the Markdown file::

    <!-- BEGIN GENERATED: encoders -->
    ...
    <!-- END GENERATED: encoders -->

and everything outside the markers is hand-written prose that :func:`update_text` keeps as is.

Run ``make docs`` (``python -m archspec.docs_gen docs/spec.md``) after changing a model;
``tests/test_docs.py`` fails when the committed file drifts.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

BEGIN = "<!-- BEGIN GENERATED: {name} -->"
END = "<!-- END GENERATED: {name} -->"
_BLOCK = re.compile(r"<!-- BEGIN GENERATED: ([a-z_]+) -->\n.*?<!-- END GENERATED: \1 -->", re.S)

#: Fields the schema lists as required although a model validator fills them in before
#: validation. The schema cannot say so; the docs must not tell users the key is required.
FILLED_BY_VALIDATOR = {
    ("head", "loss"): "the head type's natural loss ([defaults](#default-losses)), weight 1",
    ("loss", "type"): "the natural loss of its head ([defaults](#default-losses)) or late fusion",
}

#: Models documented under their own heading (not components): ``$defs`` name → (title, anchor).
_MODEL_HEADINGS = {
    "TrainingConfig": ("The `training` mapping", "the-training-mapping"),
    "DataConfig": ("`training.data`", "trainingdata"),
    "EarlyStoppingConfig": ("`training.early_stopping`", "trainingearly_stopping"),
    "TrackingConfig": ("`training.tracking`", "trainingtracking"),
}

_KIND_TITLES = {"input": "input", "encoder": "encoder", "fusion": "fusion", "head": "head",
                "loss": "loss", "tokenizer": "tokenizer", "optimizer": "optimizer", "schedule": "schedule",
                "weighting": "weighting"}
#: Section of docs/spec.md that lists each kind (GitHub heading anchors; a test checks every link).
_KIND_ANCHORS = {"input": "#3-inputs", "encoder": "#4-encoders", "fusion": "#5-fusions-early-and-late",
                 "head": "#6-heads", "loss": "#7-losses", "tokenizer": "#tokenizers",
                 "optimizer": "#optimizers", "schedule": "#schedules", "weighting": "#loss-weighting"}


class _Doc:
    """One schema plus lookups: which ``$defs`` entry is which component kind and type."""

    def __init__(self, schema: dict):
        self.schema = schema
        self.defs = schema.get("$defs", {})
        self.kind_of: dict[str, tuple[str, str]] = {}  # def name -> (kind, type name)
        self.components: dict[str, dict[str, str]] = {}  # kind -> type name -> def name
        props = schema["properties"]
        for section, kind in (("inputs", "input"), ("encoders", "encoder"), ("fusions", "fusion"),
                              ("heads", "head")):
            self._collect(kind, props[section]["additionalProperties"])
        for d in self.defs.values():
            for name, p in d.get("properties", {}).items():
                for cand in [p, *p.get("anyOf", [])]:
                    if "discriminator" not in cand:
                        continue
                    kind = {"loss": "loss", "tokenizer": "tokenizer", "optimizer": "optimizer",
                            "schedule": "schedule", "loss_weighting": "weighting"}.get(name)
                    if kind:
                        self._collect(kind, cand)

    def _collect(self, kind: str, union: dict) -> None:
        mapping = union.get("discriminator", {}).get("mapping")
        if mapping is None and "$ref" in union:  # a registry with a single member
            ref = union["$ref"].rsplit("/", 1)[-1]
            mapping = {self.defs[ref]["properties"]["type"]["const"]: union["$ref"]}
        for tname, ref in (mapping or {}).items():
            ref = ref.rsplit("/", 1)[-1]
            self.kind_of[ref] = (kind, tname)
            self.components.setdefault(kind, {})[tname] = ref

    # -- rendering of one JSON Schema type ------------------------------------------------------

    def type_text(self, s: dict) -> str:
        if "$ref" in s:
            ref = s["$ref"].rsplit("/", 1)[-1]
            if ref in self.kind_of:
                kind, tname = self.kind_of[ref]
                return f"[`{tname}` {kind}](#{_anchor(tname, kind)})"
            title, anchor = _MODEL_HEADINGS.get(ref, (ref, ref.lower()))
            return f"mapping ([{title}](#{anchor}))"
        if "discriminator" in s:
            ref = next(iter(s["discriminator"]["mapping"].values())).rsplit("/", 1)[-1]
            kind = self.kind_of[ref][0]
            return f"{_article(kind)} {kind} ([types]({_KIND_ANCHORS[kind]}))"
        if "anyOf" in s:
            parts = [p for p in s["anyOf"] if p != {"type": "null"}]
            text = " or ".join(self.type_text(p) for p in parts)
            if len(parts) < len(s["anyOf"]):
                text += " or `null`"
            return text
        if "const" in s:
            return f"`{_yaml(s['const'])}`"
        if "enum" in s:
            return "one of " + ", ".join(f"`{_yaml(v)}`" for v in s["enum"])
        t = s.get("type")
        if t == "array":
            items = s.get("items")
            text = "list of " + (self.type_text(items) if items else "values")
            length = _length(s, "Items", "item")
            return text + (f", {length}" if length else "")
        if t == "object":
            ap = s.get("additionalProperties")
            if isinstance(ap, dict) and ap:
                names = _length(s.get("propertyNames", {}), "Length", "char")
                return _join("mapping of name → " + self.type_text(ap), f"names: {names}" if names else "")
            return "mapping"
        if t in ("integer", "number"):
            return _join(t, _bounds(s))
        if t == "string":
            return _join("string", _length(s, "Length", "char"), f"matching `{s['pattern']}`" if "pattern" in s else "")
        if t == "boolean":
            return "boolean"
        return "any"

    def default_text(self, s: dict, required: bool) -> str:
        if "default" not in s:
            return "**required**" if required else "—"
        d = s["default"]
        if isinstance(d, dict):  # a nested model's defaults: name its type only
            return f"`{{type: {d['type']}}}`" if "type" in d else "`{}`"
        return f"`{_yaml(d)}`"

    # -- tables --------------------------------------------------------------------------------

    def table(self, d: dict, owner: tuple[str, str] | None = None) -> str:
        props = d.get("properties", {})
        required = set(d.get("required", [])) - {n for (k, n) in FILLED_BY_VALIDATOR if owner and k == owner[0]}
        names = list(props)
        order = (["type"] if "type" in props else []) + [n for n in names if n in required and n != "type"] \
            + [n for n in names if n not in required and n not in ("type", "description")] \
            + (["description"] if "description" in props else [])
        rows = ["| Field | Type | Default | Meaning |", "|---|---|---|---|"]
        for n in order:
            p = props[n]
            filled = FILLED_BY_VALIDATOR.get((owner[0], n)) if owner else None
            default = filled if filled and "default" not in p else self.default_text(p, n in required)
            desc = _oneline(p.get("description", ""))
            if n == "type" and "const" in p and owner and not desc:
                desc = f"Selects this {owner[0]} type."
            desc = desc or "—"
            rows.append(f"| `{n}` | {self.type_text(p)} | {default} | {desc} |")
        return "\n".join(rows)

    def component(self, ref: str) -> str:
        kind, tname = self.kind_of[ref]
        d = self.defs[ref]
        title = f"#### `{tname}` {_KIND_TITLES[kind]}"
        return "\n\n".join([title, _oneline(d.get("description", "")), self.table(d, (kind, tname))])

    def kind_block(self, kind: str) -> str:
        return "\n\n".join(self.component(ref) for _, ref in sorted(self.components[kind].items()))

    def model_block(self, ref: str, title: str) -> str:
        d = self.defs[ref]
        return "\n\n".join([title, _oneline(d.get("description", "")), self.table(d)])

    def root_block(self) -> str:
        return "\n\n".join([_oneline(self.schema.get("description", "")), self.table(self.schema)])


def _anchor(tname: str, kind: str) -> str:
    """GitHub's anchor of the heading ``#### `tname` kind``."""
    return f"{tname}-{kind}".lower()


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _yaml(v) -> str:
    """A value as YAML flow text (YAML 1.2 scalars)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return v if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_@./-]*", v) and v not in ("null", "true", "false") else json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_yaml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_yaml(x)}" for k, x in v.items()) + "}"
    return str(v)


def _num(x) -> str:
    return f"{x:,}".replace(",", "_") if isinstance(x, int) and abs(x) >= 10_000 else repr(x)


def _bounds(s: dict) -> str:
    lo = ("> " + _num(s["exclusiveMinimum"])) if "exclusiveMinimum" in s else (
        ("≥ " + _num(s["minimum"])) if "minimum" in s else "")
    hi = ("< " + _num(s["exclusiveMaximum"])) if "exclusiveMaximum" in s else (
        ("≤ " + _num(s["maximum"])) if "maximum" in s else "")
    return ", ".join(x for x in (lo, hi) if x)


def _length(s: dict, what: str, unit: str) -> str:
    lo, hi = s.get(f"min{what}"), s.get(f"max{what}")
    if lo is not None and lo == hi:
        return f"exactly {lo} {unit}{'s' if lo != 1 else ''}"
    if lo is not None and hi is not None:
        return f"{lo}–{_num(hi)} {unit}s"
    parts = []
    if lo is not None:
        parts.append(f"≥ {lo} {unit}{'s' if lo != 1 else ''}")
    if hi is not None:
        parts.append(f"≤ {hi} {unit}s")
    return ", ".join(parts)


def _join(base: str, *constraints: str) -> str:
    cs = [c for c in constraints if c]
    return base + (" (" + "; ".join(cs) + ")" if cs else "")


def _oneline(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


# -- blocks that do not come from the JSON Schema --------------------------------------------

_MINIMAL_HEADS = {
    "multiclass": [{"classes": 2, "from": "x"}],
    "multilabel": [{"labels": 2, "from": "x"}],
    "binary": [{"from": "x"}],
    "regression": [{"from": "x"}],
    "similarity": [{"query": "q", "candidate": "c"},
                   {"query": "q", "candidate": "c", "loss": {"type": "contrastive"}}],
}


def losses_block() -> str:
    """Default and allowed losses per head type, from the head and loss configs themselves."""
    from .registry import REGISTRIES
    from .spec.losses import losses_for

    rows = ["| Head type | Output | Default loss | Allowed losses |", "|---|---|---|---|"]
    outputs = {"multiclass": "`(B, C)` logits", "multilabel": "`(B, L)` logits", "binary": "`(B,)` logits",
               "regression": "`(B, outputs)` values", "similarity": "`(B,)` score"}
    for name in REGISTRIES["head"].names():
        cfg = REGISTRIES["head"].configs[name]
        rows.append(f"| `{name}` | {outputs.get(name, '—')} | `{cfg.default_loss}` | "
                    + ", ".join(f"`{x}`" for x in losses_for(cfg.kind)) + " |")
    return "\n".join(rows)


def metrics_block() -> str:
    """Which metric applies to which prediction kind, and each head type's default metrics."""
    from .registry import REGISTRIES
    from .spec import node_adapter
    from .spec.metrics import known_metrics, metric_kinds

    kinds = ["multiclass", "multilabel", "binary", "regression", "similarity", "late"]
    rows = ["| Metric | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for m in known_metrics():
        ks = metric_kinds(m.replace("K", "10")) or set()
        rows.append(f"| `{m}` | " + " | ".join("✓" if k in ks else "" for k in kinds) + " |")
    defaults = ["| Head type | Metrics when `metrics` is left out |", "|---|---|"]
    for name in REGISTRIES["head"].names():
        for extra in _MINIMAL_HEADS.get(name, []):
            cfg = node_adapter("heads").validate_python({"type": name, **extra})
            when = f" with `loss: {{type: {extra['loss']['type']}}}`" if "loss" in extra else ""
            if name == "similarity" and not when:
                when = f" with `loss: {{type: {cfg.loss.type}}}` (the default)"
            defaults.append(f"| `{name}`{when} | " + ", ".join(f"`{x}`" for x in cfg.resolved_metrics()) + " |")
    return "\n".join(rows) + "\n\n" + "\n".join(defaults)


def render_blocks(schema: dict | None = None) -> dict[str, str]:
    """Every generated block of ``docs/spec.md``, by marker name.

    Args:
        schema: the JSON Schema to document; defaults to :func:`archspec.spec.json_schema`.

    Returns:
        marker name → Markdown text (without the markers).
    """
    if schema is None:
        from .spec import json_schema

        schema = json_schema()
    doc = _Doc(schema)
    blocks = {
        "root": doc.root_block(),
        "inputs": doc.kind_block("input"),
        "tokenizers": doc.kind_block("tokenizer"),
        "encoders": doc.kind_block("encoder"),
        "fusions": doc.kind_block("fusion"),
        "heads": doc.kind_block("head"),
        "losses": doc.kind_block("loss"),
        "loss_defaults": losses_block(),
        "metrics": metrics_block(),
        "training": "\n\n".join([
            doc.model_block(ref, f"#### {_MODEL_HEADINGS[ref][0]}")
            for ref in ("TrainingConfig", "DataConfig", "EarlyStoppingConfig", "TrackingConfig")
        ]),
        "optimizers": doc.kind_block("optimizer"),
        "schedules": doc.kind_block("schedule"),
        "loss_weighting": doc.kind_block("weighting"),
    }
    return blocks


def update_text(text: str, blocks: dict[str, str] | None = None) -> str:
    """``text`` with every generated block replaced by its current rendering.

    Raises:
        ValueError: a marker names an unknown block, or a block has no marker in ``text``.

    Example:
        >>> t = "Intro\\n<!-- BEGIN GENERATED: x -->\\nold\\n<!-- END GENERATED: x -->\\nOutro\\n"
        >>> print(update_text(t, {"x": "new"}), end="")
        Intro
        <!-- BEGIN GENERATED: x -->
        <BLANKLINE>
        new
        <BLANKLINE>
        <!-- END GENERATED: x -->
        Outro
    """
    blocks = render_blocks() if blocks is None else blocks
    found = set()

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in blocks:
            raise ValueError(f"unknown generated block '{name}' (known: {', '.join(sorted(blocks))})")
        found.add(name)
        # blank lines around the content: a table must not run into the closing comment
        return f"{BEGIN.format(name=name)}\n\n{blocks[name].strip()}\n\n{END.format(name=name)}"

    out = _BLOCK.sub(sub, text)
    missing = sorted(set(blocks) - found)
    if missing:
        raise ValueError(f"no markers for generated block(s): {', '.join(missing)}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m archspec.docs_gen", description=__doc__.splitlines()[0])
    p.add_argument("file", nargs="?", default="docs/spec.md")
    p.add_argument("--check", action="store_true", help="exit 1 if the file is not up to date")
    args = p.parse_args(argv)
    path = Path(args.file)
    old = path.read_text(encoding="utf-8")
    new = update_text(old)
    if args.check:
        if new != old:
            print(f"{path} is out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    if new != old:
        path.write_text(new, encoding="utf-8")
        print(f"updated {path}")
    else:
        print(f"{path} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
