"""Tracking: TensorBoard event files and the MLflow store hold what the run logged (read back with the
libraries' own readers); a resumed run continues its MLflow run; sweep trials are nested runs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from archspec.errors import ArchspecError
from archspec.pipeline import check_text

SPEC = """\
archspec: 1
name: tracked
inputs:
  x: {type: numeric, columns: [a, b, c, d]}
encoders:
  enc: {type: mlp, input: x, layers: [8]}
heads:
  y: {type: multiclass, from: enc, classes: 3, metrics: [accuracy]}
  z: {type: regression, from: enc, loss: {type: mse, weight: 0.5}}
training:
  data: {train: data.csv}
  batch_size: 16
  epochs: 2
  validation_split: 0.25
  seed: 1
TRACKING"""


def _project(tmp_path: Path, tracking: str = "") -> Path:
    import numpy as np
    import pandas as pd

    r = np.random.default_rng(0)
    df = pd.DataFrame(r.normal(size=(64, 4)), columns=list("abcd"))
    df["y"] = (df.a > 0).astype(int) + (df.b > 0.5).astype(int)
    df["z"] = df.c * 2 + df.d
    df.to_csv(tmp_path / "data.csv", index=False)
    spec = tmp_path / "tracked.yaml"
    spec.write_text(SPEC.replace("TRACKING", textwrap.indent(tracking, "  ")))
    return spec


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tracking_config_is_checked():
    spec = SPEC.replace("TRACKING", "  tracking: {backends: [tensorbord]}\n")
    (d,) = check_text(spec).errors
    assert d.path == ("training", "tracking", "backends", 0) and "tensorboard" in d.message + d.hint


@pytest.mark.integration
def test_tensorboard_events_hold_the_logged_values(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from archspec.train import fit

    spec = _project(tmp_path, "tracking: {backends: [tensorboard]}\n")
    res = fit(str(spec), out=str(tmp_path / "run"), progress=False, log=lambda *a, **k: None)
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(1, res.steps + 1))
    assert {"train/lr", "train/loss/y", "train/loss/z", "loss_weight/z", "weight/z", "val/y/accuracy", "val/loss"} <= set(tags)
    assert acc.Scalars("loss_weight/z")[0].value == pytest.approx(0.5)
    records = _metrics(tmp_path / "run")
    got = [(e.step, e.value) for e in acc.Scalars("val/y/accuracy")]
    assert got == [(r["step"], pytest.approx(r["val/y/accuracy"])) for r in records]
    assert "spec/text_summary" in acc.Tags()["tensors"] and "graph" in acc.Tags()["images"]


@pytest.mark.integration
def test_mlflow_store_holds_the_logged_values_and_resume_continues_the_run(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from archspec.cli import main

    spec = _project(tmp_path)
    run = tmp_path / "runs" / "r1"
    assert main(["train", str(spec), "--out", str(run), "--track", "mlflow", "--epochs", "1"]) == 0
    uri = f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"  # the default: next to the runs
    client = MlflowClient(uri)
    state = json.loads((run / "tracking.json").read_text())
    assert state["mlflow_uri"] == uri
    r = client.get_run(state["mlflow_run_id"])
    assert r.info.status == "FINISHED" and r.info.run_name == "r1"
    assert r.data.params["training.optimizer.lr"] == "0.001" and r.data.params["loss_weight.z"] == "0.5"
    steps = [m.step for m in client.get_metric_history(r.info.run_id, "train/loss")]
    assert steps == [1, 2, 3]  # 48 training rows, batches of 16
    arts = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"spec.yaml", "resolved_spec.json", "metrics.jsonl", "graph.mmd", "graph.dot", "graph.png", "checkpoints",
            "preprocess"} <= arts
    art_root = Path(r.info.artifact_uri.removeprefix("file://"))
    assert art_root.is_relative_to((tmp_path / "runs" / "mlartifacts").resolve())  # not ./mlruns

    # a second epoch on resume: the same MLflow run gets its steps and values
    assert main(["train", "--resume", str(run), "--track", "mlflow", "--epochs", "2"]) == 0
    steps = [m.step for m in client.get_metric_history(r.info.run_id, "train/loss")]
    assert steps == [1, 2, 3, 4, 5, 6]
    history = client.get_metric_history(r.info.run_id, "val/y/accuracy")
    records = _metrics(run)
    assert [(m.step, m.value) for m in history] == [(x["step"], pytest.approx(x["val/y/accuracy"])) for x in records]
    assert client.get_run(r.info.run_id).info.status == "FINISHED"
    assert len(client.search_runs([r.info.experiment_id])) == 1


@pytest.mark.integration
def test_sweep_trials_are_nested_mlflow_runs(tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("optuna")
    from mlflow.tracking import MlflowClient

    from archspec.sweep import run_sweep

    spec = _project(tmp_path)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("sweep: 1\nmetric: y/accuracy\ntrials: 2\nsampler: {type: random, seed: 0}\n"
                     "params:\n  training.optimizer.lr: {type: log_uniform, low: 1.0e-3, high: 1.0e-2}\n")
    out = tmp_path / "sw"
    run_sweep(spec, sweep, out=out, track=["mlflow"], log=lambda *a, **k: None)
    client = MlflowClient(f"sqlite:///{(out / 'mlflow.db').resolve()}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert sorted(c.info.run_name for c in children) == ["trial-0000", "trial-0001"]
    assert "best/y/accuracy" in parents[0].data.metrics


def test_unknown_backend_is_an_error(tmp_path):
    from archspec.tracking import resolve_backends

    with pytest.raises(ArchspecError, match="unknown tracking backend 'wandb'"):
        resolve_backends(None, ["wandb"])
