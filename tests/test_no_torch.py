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
         main(["schema"]), main(["validate", "--format", "sarif", *sys.argv[1:]]),
         main(["diff", sys.argv[1], sys.argv[-1]]) if len(sys.argv) > 2 else 1,
         main(["diff", "--format", "markdown", sys.argv[1], sys.argv[1]])]
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
    # validate --shapes, --format json, schema, --format sarif; diff of two specs (changed), of one with itself
    assert result["codes"] == [0, 0, 0, 0, 1, 0]
    assert result["heavy"] == [], f"validate imported {result['heavy']}"


def test_validating_invalid_specs_imports_no_torch():
    corpus = sorted((ROOT / "tests" / "invalid").glob("*.yaml"))
    result = _run(corpus)
    assert result["codes"][:2] == [1, 1] and result["codes"][3] == 1
    assert result["codes"][4:] == [2, 2]  # diff of invalid specs: their diagnostics, exit 2
    assert result["heavy"] == [], f"validate imported {result['heavy']}"


def test_diff_pairs_import_no_torch():
    """`archspec diff` over the whole diff corpus (renames, shapes, parameter counts, invalid sides)."""
    pairs = sorted((ROOT / "tests" / "diff_pairs").glob("*/old.yaml"))
    script = ("import sys, json\nfrom archspec.cli import main\n"
              "codes = [main(['diff', a, a.replace('old.yaml', 'new.yaml'), '--format', 'json']) for a in sys.argv[1:]]\n"
              f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {set(HEAVY)!r})\n"
              "print('RESULT ' + json.dumps({'codes': codes, 'heavy': heavy}), file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", script, *map(str, pairs)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert "Traceback" not in proc.stderr, proc.stderr
    result = json.loads(next(ln for ln in proc.stderr.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])
    assert set(result["codes"]) == {0, 1, 2}
    assert result["heavy"] == [], f"diff imported {result['heavy']}"
