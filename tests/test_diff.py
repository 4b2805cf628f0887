"""`archspec diff`: a corpus of spec pairs (tests/diff_pairs/*/old.yaml, new.yaml) with the exact
expected output and exit code in expected.txt; JSON and markdown forms; REF:path from git."""

from __future__ import annotations

import json
import subprocess

import pytest

from archspec.cli import main

from conftest import ROOT

PAIRS = sorted(p for p in (ROOT / "tests" / "diff_pairs").iterdir() if p.is_dir())


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_the_corpus_is_large_enough():
    assert len(PAIRS) >= 15


@pytest.mark.parametrize("case", PAIRS, ids=[p.name for p in PAIRS])
def test_diff_pair(case, capsys, monkeypatch):
    monkeypatch.chdir(case)
    expected = (case / "expected.txt").read_text()
    body, _, code_line = expected.rstrip("\n").rpartition("\n")
    code, out, err = run(capsys, "diff", "old.yaml", "new.yaml")
    assert f"exit: {code}" == code_line
    assert out + err == body + "\n"


def test_formatting_only_is_no_change_in_every_format(capsys, monkeypatch):
    monkeypatch.chdir(ROOT / "tests" / "diff_pairs" / "02_formatting_only")
    code, out, _ = run(capsys, "diff", "old.yaml", "new.yaml", "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["changed"] is False and data["checkpoint_compatible"] is True
    assert data["fields"] == data["edges"] == data["shapes"] == data["params"]["nodes"] == []
    code, out, _ = run(capsys, "diff", "old.yaml", "new.yaml", "--format", "markdown")
    assert code == 0 and out == "**archspec diff** `old.yaml` → `new.yaml`: no semantic change\n"


def test_json_of_a_width_change(capsys, monkeypatch):
    monkeypatch.chdir(ROOT / "tests" / "diff_pairs" / "06_width_change_downstream")
    code, out, _ = run(capsys, "diff", "old.yaml", "new.yaml", "--format", "json")
    data = json.loads(out)
    assert code == 1 and data["changed"] and not data["checkpoint_compatible"]
    assert data["fields"] == [{"node": "stats_enc", "path": "encoders.stats_enc.layers", "old": [16, 8],
                               "new": [16, 12], "line": 11, "category": "model"}]
    assert data["shapes"] == [
        {"node": "encoders.stats_enc", "old": "(B, 8) features", "new": "(B, 12) features", "cause": "own",
         "upstream": []},
        {"node": "fusions.both", "old": "(B, 16) features", "new": "(B, 20) features", "cause": "upstream",
         "upstream": ["encoders.stats_enc"]}]
    assert data["params"]["nodes"] == [
        {"node": "encoders.stats_enc", "old": "200", "new": "268", "delta": 68, "old_value": 200, "new_value": 268,
         "bound": False},
        {"node": "heads.score", "old": "9", "new": "13", "delta": 4, "old_value": 9, "new_value": 13, "bound": False},
        {"node": "heads.label", "old": "51", "new": "63", "delta": 12, "old_value": 51, "new_value": 63,
         "bound": False}]
    assert data["params"]["total"] == {"old": "≤ 4,260", "new": "≤ 4,344", "delta": 84, "old_value": 4260,
                                       "new_value": 4344, "bound": True}
    assert data["nodes"] == {"added": [], "removed": [], "renamed": []}


def test_markdown_of_a_rename_and_a_loss_weight(capsys, tmp_path):
    old = (ROOT / "tests" / "diff_pairs" / "03_rename_encoder" / "old.yaml").read_text()
    new = (ROOT / "tests" / "diff_pairs" / "03_rename_encoder" / "new.yaml").read_text()
    (tmp_path / "old.yaml").write_text(old)
    (tmp_path / "new.yaml").write_text(new.replace("weight: 0.5", "weight: 2.0"))
    code, out, _ = run(capsys, "diff", str(tmp_path / "old.yaml"), str(tmp_path / "new.yaml"), "--format", "markdown")
    assert code == 1
    o, n = tmp_path / "old.yaml", tmp_path / "new.yaml"
    assert out == f"""**archspec diff** `{o}` → `{n}`: 1 node renamed, 1 field changed, ⚠️ **checkpoint-incompatible**

| Node | Change | Details |
|---|---|---|
| `encoders.stats_enc` | renamed to `stats_tower` | line 11 |

**Losses, metrics and thresholds**

| Field | Old | New | Line |
|---|---|---|---|
| `heads.score.loss.weight` | `0.5` | `2.0` | 25 |

**Checkpoint-incompatible**: a run trained on the old spec cannot load its weights into the new one:

- encoders.stats_enc is renamed stats_tower: its state-dict keys change
"""


def test_invalid_side_in_json_and_markdown(capsys, monkeypatch):
    monkeypatch.chdir(ROOT / "tests" / "diff_pairs" / "11_invalid_new")
    code, out, _ = run(capsys, "diff", "old.yaml", "new.yaml", "--format", "json")
    data = json.loads(out)
    assert code == 2 and data["valid"] is False
    assert [(s["file"], [d["code"] for d in s["diagnostics"]]) for s in data["invalid"]] == [("new.yaml", ["E-REF"])]
    code, out, _ = run(capsys, "diff", "old.yaml", "new.yaml", "--format", "markdown")
    assert code == 2
    assert out.splitlines()[:3] == ["**archspec diff**: `new.yaml` is not a valid spec (1 error), so it cannot "
                                    "be compared:", "", "```"]
    assert "new.yaml:19:11: error[E-REF]" in out


def test_usage_errors_exit_2(capsys, tmp_path):
    assert run(capsys, "diff", "only-one.yaml")[0] == 2
    assert run(capsys, "diff", "a.yaml", "b.yaml", "--format", "html")[0] == 2


def test_ref_path_reads_the_old_side_from_git(capsys, tmp_path, monkeypatch):
    case = ROOT / "tests" / "diff_pairs" / "07_loss_weight"
    repo = tmp_path / "repo"
    (repo / "specs").mkdir(parents=True)
    spec = repo / "specs" / "x.yaml"
    spec.write_text((case / "old.yaml").read_text())
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}
    for cmd in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "spec"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True, env={**env, "PATH": "/usr/bin:/bin"})
    spec.write_text((case / "new.yaml").read_text())
    monkeypatch.chdir(repo)
    code, out, _ = run(capsys, "diff", "main:specs/x.yaml", "specs/x.yaml")
    assert code == 1
    assert out.splitlines()[:3] == ["archspec diff main:specs/x.yaml → specs/x.yaml: 1 field changed, checkpoints "
                                    "still load", "Losses, metrics and thresholds",
                                    "  heads.score.loss.weight: 0.5 → 0.25 (line 25)"]
    assert run(capsys, "diff", "main:specs/x.yaml", "main:specs/x.yaml")[0] == 0
    code, out, err = run(capsys, "diff", "nosuchbranch:specs/x.yaml", "specs/x.yaml")
    assert code == 2
    assert err.startswith("archspec: error: cannot read 'nosuchbranch:specs/x.yaml' from git: ")
    code, out, err = run(capsys, "diff", "main:specs/nope.yaml", "specs/x.yaml")
    assert code == 2 and "does not exist" in err
