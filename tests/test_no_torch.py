"""`archspec validate` stays light: stages 1–5 never import torch (or transformers/torchvision)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT, SPECS

HEAVY = ("torch", "transformers", "torchvision", "tokenizers", "safetensors")

SCRIPT = """
import json, sys
from archspec.cli import main
codes = [main(["validate", "--shapes", *sys.argv[1:]]), main(["validate", "--format", "json", *sys.argv[1:]]),
         main(["schema"])]
import archspec
archspec.check_file(sys.argv[1])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print("RESULT " + json.dumps({{"codes": codes, "heavy": heavy}}), file=sys.stderr)
"""


def _run(files):
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(heavy=set(HEAVY)), *map(str, files)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert "Traceback" not in proc.stderr, proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_validating_shipped_specs_imports_no_torch():
    result = _run(SPECS)
    assert result["codes"] == [0, 0, 0]
    assert result["heavy"] == [], f"validate imported {result['heavy']}"


def test_validating_invalid_specs_imports_no_torch():
    corpus = sorted((ROOT / "tests" / "invalid").glob("*.yaml"))
    result = _run(corpus)
    assert result["codes"][:2] == [1, 1]
    assert result["heavy"] == [], f"validate imported {result['heavy']}"
