"""The `archspec-validate` pre-commit hook, run by pre-commit in a temporary git repository.

The shipped `.pre-commit-hooks.yaml` declares `language: python`: a user's pre-commit pip-installs
archspec's light core into the hook's environment, which needs the network, so it cannot run
here. The test checks the manifest with pre-commit's own loader, then runs the very same hook
(entry, arguments, file types) as a `repo: local` hook with `language: system`, pointing `archspec`
at this interpreter: staged specs are validated, a broken spec blocks the commit, other YAML is
skipped. Nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import yaml

from conftest import ROOT

import pre_commit  # noqa: F401  (the `test` extra installs it)


def manifest() -> list[dict]:
    from pre_commit.clientlib import load_manifest

    return load_manifest(str(ROOT / ".pre-commit-hooks.yaml"))


def test_manifest_is_valid_for_pre_commit():
    hooks = {h["id"]: h for h in manifest()}
    assert set(hooks) == {"archspec-validate", "archspec-validate-strict"}
    for h in hooks.values():
        assert h["language"] == "python" and h["types"] == ["yaml"] and h["entry"].startswith("archspec validate ")
        assert "--only-specs" in h["entry"]


def _repo(tmp_path, hook_id: str):
    hook = next(h for h in manifest() if h["id"] == hook_id)
    args = hook["entry"].split()[1:]  # after the `archspec` console script
    local = {"id": hook["id"], "name": hook["name"], "language": "system", "types": hook["types"],
             "entry": " ".join([sys.executable, "-m", "archspec", *args])}
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": [{"repo": "local", "hooks": [local]}]}))
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"), "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}  # a user's hooksPath would stop install
    env.pop("PRE_COMMIT", None)

    def git(*argv, check=True):
        return subprocess.run(["git", *argv], cwd=repo, env=env, capture_output=True, text=True, check=check,
                              timeout=120)

    git("init", "-q", "-b", "main")
    subprocess.run([sys.executable, "-m", "pre_commit", "install"], cwd=repo, env=env, check=True,
                   capture_output=True, timeout=120)
    return repo, git


def test_hook_blocks_a_commit_with_an_invalid_spec_and_skips_other_yaml(tmp_path):
    repo, git = _repo(tmp_path, "archspec-validate")
    shutil.copy(ROOT / "specs" / "two_tower.yaml", repo / "good.yaml")
    (repo / "ci.yml").write_text("on: push\njobs: {}\n")  # YAML but not a spec: skipped
    git("add", "-A")
    ok = git("commit", "-m", "good spec", check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "archspec validate" in ok.stdout + ok.stderr and "Passed" in ok.stdout + ok.stderr

    (repo / "models").mkdir()
    shutil.copy(ROOT / "tests" / "invalid" / "ref_typo.yaml", repo / "models" / "bad.yaml")
    git("add", "-A")
    bad = git("commit", "-m", "broken spec", check=False)
    out = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert "Failed" in out
    assert "models/bad.yaml:12:11: error[E-REF]: heads.sentiment.from: unknown node 'bga' — did you mean 'bag'?" in out
    assert "ci.yml" not in out
    assert git("log", "--oneline").stdout.count("\n") == 1  # the broken spec was not committed


def test_strict_hook_fails_on_warnings(tmp_path):
    repo, git = _repo(tmp_path, "archspec-validate-strict")
    shutil.copy(ROOT / "tests" / "invalid" / "warn_unused_input.yaml", repo / "spec.yaml")
    git("add", "-A")
    res = git("commit", "-m", "warning", check=False)
    assert res.returncode != 0
    assert "warning[W-UNUSED]" in res.stdout + res.stderr
