"""`archspec sweep`: the sweep file language, checked trial specs, resume after SIGKILL, pruning,
two workers on one SQLite study, and a best spec that reproduces its metric."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from archspec.errors import SpecError
from archspec.pipeline import check_file
from archspec.sweep import load_sweep, check_sweep, set_path, sweep_schema

from conftest import ROOT

optuna = pytest.importorskip("optuna")  # the `sweep` extra; `make test` installs it

PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}

SPEC = """\
archspec: 1
name: tiny
inputs:
  x: {type: numeric, columns: [a, b, c, d]}
encoders:
  enc: {type: mlp, input: x, layers: [16]}
heads:
  y: {type: multiclass, from: enc, classes: 3, metrics: [accuracy]}
training:
  data: {train: data.csv}
  batch_size: 16
  epochs: EPOCHS
  validation_split: 0.25
  seed: 3
"""


def _project(tmp_path: Path, sweep: str, epochs: int = 3, n: int = 96) -> tuple[Path, Path]:
    import numpy as np
    import pandas as pd

    (tmp_path / "tiny.yaml").write_text(SPEC.replace("EPOCHS", str(epochs)))
    r = np.random.default_rng(0)
    df = pd.DataFrame(r.normal(size=(n, 4)), columns=list("abcd"))
    df["y"] = (df.a > 0).astype(int) + (df.b > 0.5).astype(int)
    df.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(sweep))
    return tmp_path / "tiny.yaml", tmp_path / "sweep.yaml"


def _study(sweep_dir: Path):
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    return optuna.load_study(study_name=meta["study"], storage=meta["storage"])


def _cli(*args, cwd=None, **kw):
    return subprocess.Popen([PY, "-m", "archspec", *args], env=ENV, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


FOUR = """\
    sweep: 1
    metric: y/accuracy
    trials: 4
    sampler: {type: random, seed: 5}
    params:
      training.optimizer.lr: {type: log_uniform, low: 1.0e-3, high: 3.0e-2}
      encoders.enc.layers: {type: categorical, choices: [[8], [16, 8]]}
"""


# --- the sweep file language (torch-free) ------------------------------------------------------

def test_sweep_schema_is_committed():
    committed = json.loads((ROOT / "specs" / "sweep.schema.json").read_text())
    assert committed == sweep_schema(), "regenerate: archspec sweep --schema > specs/sweep.schema.json"


def test_sweep_file_mistakes_are_located(tmp_path):
    spec, _ = _project(tmp_path, FOUR)
    bad = tmp_path / "bad.yaml"
    bad.write_text("sweep: 1\nmetric: y/acuracy\ntrials: 2\nparams:\n"
                   "  encoders.enk.layers: {type: categorical, choices: [[8]]}\n"
                   "  training.optimizer.lr: {type: uniform, low: 0.1, high: 0.01}\n")
    with pytest.raises(SpecError) as e:
        load_sweep(bad)
    (d,) = e.value.diagnostics
    assert (d.line, d.path) == (6, ("params", "training.optimizer.lr")) and "below" in d.message
    bad.write_text(bad.read_text().replace("low: 0.1, high: 0.01", "low: 0.01, high: 0.1"))
    cfg, _, smap = load_sweep(bad)
    diags = check_sweep(cfg, smap, check_file(spec))
    assert {d.code for d in diags} == {"E-SWEEP"}
    got = {(d.line, d.message.split(":")[0]) for d in diags}
    assert (2, "'y' reports no metric 'acuracy'") in got
    assert any(d.line == 5 and "no encoder 'enk'" in d.message and "did you mean 'enc'" in d.hint for d in diags)


def test_set_path_fills_missing_mappings_from_the_resolved_spec():
    data = {"training": {"epochs": 2}}
    set_path(data, "training.optimizer.lr", 0.5, {"training": {"optimizer": {"type": "adam", "lr": 0.001}}})
    assert data["training"]["optimizer"] == {"type": "adam", "lr": 0.5}
    data = {"encoders": {"e": {"layers": [8, 4]}}}
    set_path(data, "encoders.e.layers.1", 2)
    assert data["encoders"]["e"]["layers"] == [8, 2]
    with pytest.raises(IndexError, match="2 items"):
        set_path(data, "encoders.e.layers.5", 2)


# --- running sweeps ----------------------------------------------------------------------------

@pytest.mark.integration
def test_sweep_resumes_after_sigkill_with_two_workers_and_best_spec_reproduces(tmp_path, capsys):
    """One worker is killed with SIGKILL mid-sweep; two worker processes then resume the same SQLite
    study together. Finished trials are not repeated, the killed trial's parameters run again, every
    trial trains exactly once, and the best spec reproduces its value."""
    spec, sweep = _project(tmp_path, FOUR, epochs=3)
    out = tmp_path / "sw"
    proc = _cli("sweep", str(spec), "--config", str(sweep), "--out", str(out))
    S = optuna.trial.TrialState
    done = []
    try:
        for _ in range(600):  # bounded: at most ~120 s
            time.sleep(0.2)
            if proc.poll() is not None:
                break
            if (out / "study.db").is_file():
                try:
                    done = _study(out).get_trials(states=(S.COMPLETE,))
                except Exception:  # noqa: BLE001 - the first worker may still be creating the tables
                    continue
                if len(done) >= 1:
                    break
    finally:
        proc.send_signal(signal.SIGKILL)
        log = proc.communicate(timeout=30)[0]
    assert len(done) >= 1, log
    before = {t.number: (t.value, (out / "trials" / f"{t.number:04d}" / "metrics.jsonl").stat().st_mtime_ns)
              for t in _study(out).get_trials(states=(S.COMPLETE,))}

    workers = [_cli("sweep", "--resume", str(out)) for _ in range(2)]  # two processes, one SQLite file
    logs = [p.communicate(timeout=300)[0] for p in workers]
    assert [p.returncode for p in workers] == [0, 0], logs
    trials = [t for t in _study(out).get_trials() if not t.user_attrs.get("surplus")]
    complete = [t for t in trials if t.state == S.COMPLETE]
    assert len(complete) == 4, [(t.number, t.state) for t in trials]
    for t in complete:  # finished trials were not repeated: same value, run untouched
        if t.number in before:
            mtime = (out / "trials" / f"{t.number:04d}" / "metrics.jsonl").stat().st_mtime_ns
            assert (t.value, mtime) == before[t.number]
        run = Path(t.user_attrs["run_dir"])  # and every trial trained exactly once, in its own run
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    assert len({t.user_attrs["run_dir"] for t in complete}) == 4
    killed = [t for t in trials if t.state == S.FAIL]
    assert all("error" not in t.user_attrs for t in killed)
    for t in killed:  # a killed trial's parameters ran again
        assert any(c.user_attrs.get("retry_of") == t.number and t.params.items() <= c.params.items()
                   for c in complete)

    from archspec.cli import main

    assert main(["sweep", "--show", str(out)]) == 0
    assert "4 complete" in capsys.readouterr().out
    best = _study(out).best_trial
    assert check_file(out / "best_spec.yaml").ok()
    from archspec.sweep import _metric_values
    from archspec.train import fit

    fit(str(out / "best_spec.yaml"), out=str(tmp_path / "again"), progress=False, log=lambda *a, **k: None)
    assert max(_metric_values(tmp_path / "again", "y/accuracy")) == pytest.approx(best.value, abs=1e-9)


@pytest.mark.integration
def test_invalid_trial_spec_fails_that_trial_at_the_sweep_line(tmp_path, capsys):
    spec, sweep = _project(tmp_path, """\
        sweep: 1
        metric: loss
        trials: 2
        params:
          encoders.enc.layers: {type: categorical, choices: [[], [8]]}
        first_trials:
          - {encoders.enc.layers: []}
          - {encoders.enc.layers: [8]}
    """, epochs=1)
    from archspec.cli import main

    assert main(["sweep", str(spec), "--config", str(sweep), "--out", str(tmp_path / "sw")]) == 0
    assert f"{sweep}:5:3: warning[W-SWEEP-SPACE]: params.encoders.enc.layers: value [] makes" in capsys.readouterr().out
    t0, t1 = _study(tmp_path / "sw").get_trials()
    assert t0.state.name == "FAIL" and t1.state.name == "COMPLETE"
    assert t0.user_attrs["error"].startswith(f"{sweep}:5:3: error[E-SWEEP-TRIAL]: params.encoders.enc.layers:")
    assert "needs at least 1 item" in t0.user_attrs["error"]


@pytest.mark.integration
def test_pruning_stops_a_bad_configuration_early(tmp_path):
    spec, sweep = _project(tmp_path, """\
        sweep: 1
        metric: loss
        trials: 2
        pruner: {type: median, startup_trials: 1, warmup_epochs: 0}
        params:
          training.optimizer.lr: {type: log_uniform, low: 1.0e-9, high: 0.1}
        first_trials:
          - {training.optimizer.lr: 0.05}
          - {training.optimizer.lr: 1.0e-9}
    """, epochs=6)
    from archspec.sweep import run_sweep

    run_sweep(spec, sweep, out=tmp_path / "sw", log=lambda *a, **k: None)
    good, bad = _study(tmp_path / "sw").get_trials()
    assert good.state.name == "COMPLETE" and good.user_attrs["epochs"] == 6
    assert bad.state.name == "PRUNED" and bad.user_attrs["epochs"] < 6
    lines = (tmp_path / "sw" / "trials" / "0001" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == bad.user_attrs["epochs"]


@pytest.mark.parametrize("path", sorted((ROOT / "specs" / "sweeps").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_sweep_files_check_against_their_spec(path):
    import jsonschema

    from archspec.load import load_file
    from archspec.sweep import preview_params, _resolved

    cfg, data, smap = load_sweep(path)
    jsonschema.validate(data, json.loads((ROOT / "specs" / "sweep.schema.json").read_text()))
    spec = ROOT / "specs" / f"{path.stem}.yaml"
    checked = check_file(spec)
    assert check_sweep(cfg, smap, checked) == []
    raw, _ = load_file(spec)
    assert preview_params(cfg, smap, raw, str(spec), spec.parent, _resolved(checked)) == []


def test_opening_a_storage_another_process_is_creating_is_retried(monkeypatch, tmp_path):
    """Two processes opening a new storage together race to create its tables; the loser retries."""
    from archspec import sweep as sw

    class IntegrityError(Exception):  # what SQLAlchemy raises for the losing CREATE / INSERT
        pass

    calls = []
    real = optuna.storages.RDBStorage

    def flaky(url, **kw):
        calls.append(url)
        if len(calls) == 1:
            raise IntegrityError("UNIQUE constraint failed: alembic_version.version_num")
        return real(url, **kw)

    monkeypatch.setattr(optuna.storages, "RDBStorage", flaky)
    storage = sw._storage(f"sqlite:///{tmp_path / 'study.db'}")
    assert len(calls) == 2 and storage is not None

    def broken(url, **kw):
        raise ValueError("not a database URL")

    monkeypatch.setattr(optuna.storages, "RDBStorage", broken)
    with pytest.raises(sw.SweepError, match="cannot open the study storage"):
        sw._storage("sqlite:///x.db")
