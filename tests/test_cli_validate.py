"""`archspec validate` and `archspec schema`: exit codes, output formats, never a traceback."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from archspec.cli import main

from conftest import ROOT, SPECS

INVALID = ROOT / "tests" / "invalid"
REF_TYPO = INVALID / "ref_typo.yaml"
WARN_ONLY = INVALID / "warn_unused_input.yaml"
NOTE_ONLY = INVALID / "note_weights_from_hub_cache.yaml"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


# ---------------------------------------------------------------------------- exit codes


def test_valid_specs_exit_0(capsys):
    code, out, err = run(capsys, "validate", *map(str, SPECS))
    assert code == 0 and err == ""
    assert out.count(": ok — ") == len(SPECS)


def test_invalid_spec_exits_1_with_the_rendered_diagnostic(capsys):
    code, out, err = run(capsys, "validate", str(REF_TYPO))
    assert code == 1
    assert out.splitlines() == [f"{REF_TYPO}:12:11: error[E-REF]: heads.sentiment.from: unknown node 'bga' "
                                "— did you mean 'bag'?"]
    assert err == "1 of 1 specs invalid: 1 error, 0 warnings\n"


def test_missing_file_is_an_invalid_spec_not_a_usage_error(capsys, tmp_path):
    code, out, err = run(capsys, "validate", str(tmp_path / "nope.yaml"))
    assert code == 1
    assert "error[E-FILE]" in out and "no such file or directory" in out


@pytest.mark.parametrize("argv", [[], ["validate"], ["validate", "--bogus", "x.yaml"], ["frobnicate"],
                                  ["validate", "--format", "xml", "x.yaml"]])
def test_usage_errors_exit_2(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert "usage:" in err


def test_help_and_version_exit_0(capsys):
    assert run(capsys, "--help")[0] == 0
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("archspec ")


# ---------------------------------------------------------------------------- strict mode


def test_warnings_pass_unless_strict(capsys):
    code, out, err = run(capsys, "validate", str(WARN_ONLY))
    assert code == 0
    assert "warning[W-UNUSED]" in out and ": ok — " in out and "1 warning" in out and "1 warnings" not in out
    code, out, err = run(capsys, "validate", "--strict", str(WARN_ONLY))
    assert code == 1
    assert "warning[W-UNUSED]" in out and ": ok — " not in out
    assert "(--strict)" in err


def test_notes_pass_even_when_strict(capsys):
    code, out, _ = run(capsys, "validate", "--strict", str(NOTE_ONLY))
    assert code == 0 and "note[N-WEIGHTS]" in out


# ---------------------------------------------------------------------------- formats


def test_json_format(capsys):
    code, out, err = run(capsys, "validate", "--format", "json", str(REF_TYPO), str(SPECS[0]), str(WARN_ONLY))
    assert code == 1
    payload = json.loads(out)
    assert [r["valid"] for r in payload] == [False, True, True]
    bad = payload[0]
    assert bad["file"] == str(REF_TYPO)
    (d,) = bad["diagnostics"]
    assert d == {"code": "E-REF", "severity": "error", "path": "heads.sentiment.from",
                 "message": "unknown node 'bga'", "hint": "did you mean 'bag'?", "file": str(REF_TYPO),
                 "line": 12, "col": 11}
    assert payload[1]["diagnostics"] == []
    assert payload[1]["shapes"] and all(s["shape"][0] == "B" for s in payload[1]["shapes"].values())
    assert [d["code"] for d in payload[2]["diagnostics"]] == ["W-UNUSED"]


def test_json_format_strict(capsys):
    code, out, _ = run(capsys, "validate", "--format", "json", "--strict", str(WARN_ONLY))
    assert code == 1 and json.loads(out)[0]["valid"] is False


def test_github_format(capsys):
    code, out, _ = run(capsys, "validate", "--format", "github", str(REF_TYPO), str(WARN_ONLY), str(NOTE_ONLY))
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == (f"::error file={REF_TYPO},line=12,col=11,title=archspec E-REF::[E-REF] "
                        "heads.sentiment.from: unknown node 'bga' — did you mean 'bag'?")
    assert re.match(r"^::warning file=.*warn_unused_input\.yaml,line=7,col=3,title=archspec W-UNUSED::", lines[1])
    assert lines[2].startswith("::notice file=")
    assert len(lines) == 3


def test_github_format_without_position_and_with_odd_file_names(capsys, tmp_path):
    missing = tmp_path / "a,b:c.yaml"
    code, out, _ = run(capsys, "validate", "--format", "github", str(missing))
    assert code == 1
    (line,) = out.splitlines()
    assert line.startswith("::error file=") and "a%2Cb%3Ac.yaml,title=archspec E-FILE::" in line
    assert ",line=" not in line


def test_multiple_files_report_every_problem(capsys):
    files = [INVALID / "ref_typo.yaml", INVALID / "metric_unknown_typo.yaml", SPECS[0],
             INVALID / "yaml_dupkey_node.yaml"]
    code, out, err = run(capsys, "validate", *map(str, files))
    assert code == 1
    assert ["E-REF", "E-METRIC", "E-YAML-DUPKEY"] == re.findall(r"error\[([A-Z-]+)\]", out)
    assert f"{SPECS[0]}: ok — " in out
    assert err.startswith("3 of 4 specs invalid: 3 errors")


def test_shapes_are_printed(capsys):
    spec = ROOT / "specs" / "two_tower.yaml"
    code, out, _ = run(capsys, "validate", "--shapes", str(spec))
    assert code == 0
    assert re.search(r"heads\s+match\s+similarity\s+\(B,\) score", out)
    assert re.search(r"encoders\s+user_tower\s+mlp\s+\(B, 32\) features", out)


def test_every_corpus_file_exits_0_or_1_without_a_traceback(capsys):
    for path in sorted(INVALID.glob("*.yaml")):
        code, out, err = run(capsys, "validate", str(path))
        assert code in (0, 1), path.name


# ---------------------------------------------------------------------------- schema


def test_schema_command_prints_the_committed_schema(capsys):
    code, out, _ = run(capsys, "schema")
    assert code == 0
    assert json.loads(out) == json.loads((ROOT / "specs" / "archspec.schema.json").read_text())


# ---------------------------------------------------------------------------- a real process


def test_subprocess_exit_codes_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"archspec: 1\nname: x\x01\n")
    cmd = [sys.executable, "-m", "archspec.cli", "validate"]
    ok = subprocess.run(cmd + [str(SPECS[0])], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    for args, want in [([str(bad), str(REF_TYPO)], 1), (["--bogus"], 2)]:
        proc = subprocess.run(cmd + args, capture_output=True, text=True, timeout=120)
        assert proc.returncode == want
        assert "Traceback" not in proc.stdout + proc.stderr
    proc = subprocess.run(cmd + [str(bad)], capture_output=True, text=True, timeout=120)
    assert "bad.yaml:2:8: error[E-YAML-SYNTAX]" in proc.stdout
