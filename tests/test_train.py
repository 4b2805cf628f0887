"""Training end to end: every shipped spec trains, evaluates and predicts; runs resume exactly."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from archspec import checkpoint as ckpt
from archspec.errors import CheckpointError, TrainingError
from archspec.pipeline import check_file
from archspec.inference import evaluate, predict
from archspec.train import fit, train

from conftest import ROOT, SPECS
from datagen import make_dataset

PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}

SMALL_SPEC = """\
archspec: 1
name: small
inputs:
  x: {type: numeric, columns: [a, b, c, d]}
encoders:
  enc: {type: mlp, input: x, layers: [32, 16], dropout: 0.2}
heads:
  y: {type: multiclass, from: enc, classes: 3}
  z: {type: regression, from: enc, loss: {type: mse, weight: 0.5}}
training:
  batch_size: 8
  epochs: EPOCHS
  validation_split: 0.25
  seed: 7
  checkpoint_every: 1
"""


def _small(tmp_path: Path, epochs: int = 6, n: int = 96, **subs) -> tuple[Path, Path]:
    import numpy as np
    import pandas as pd

    text = SMALL_SPEC.replace("EPOCHS", str(epochs))
    for k, v in subs.items():
        text = text.replace(k, v)
    spec = tmp_path / "small.yaml"
    spec.write_text(text)
    r = np.random.default_rng(0)
    df = pd.DataFrame(r.normal(size=(n, 4)), columns=list("abcd"))
    df["y"] = (df.a > 0).astype(int) + (df.b > 0.5).astype(int)
    df["z"] = df.c * 2 + df.d
    data = tmp_path / "data.csv"
    df.to_csv(data, index=False)
    return spec, data


def _weights(run: Path) -> dict:
    p = json.loads((run / "checkpoints" / "last.json").read_text())
    return load_file(str(run / "checkpoints" / p["weights"]))


def _assert_identical(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.integration
@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_every_spec_trains_evaluates_predicts(spec, tmp_path):
    checked = check_file(spec)
    data = make_dataset(checked, 24, tmp_path / "data")
    run = train(spec, data=str(data), out=str(tmp_path / "run"), max_steps=2, epochs=2, progress=False,
                log=lambda *a: None)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines and lines[-1]["step"] == 2
    metrics = evaluate(run, data)
    assert "loss" in metrics and all(v == v for k, v in metrics.items() if k.endswith("loss"))
    for name in checked.graph.predictions():
        assert any(k.startswith(name + "/") for k in metrics), name
    out = predict(run, data, tmp_path / "pred.csv")
    assert len(out) == 24
    assert (tmp_path / "pred.csv").is_file()


def test_run_directory_contents_and_plot(tmp_path):
    spec, data = _small(tmp_path, epochs=2)
    run = train(spec, data=str(data), out=str(tmp_path / "run"), progress=False, plot=True, log=lambda *a: None)
    resolved = json.loads((run / "resolved_spec.json").read_text())
    assert resolved["training"]["optimizer"] == {"type": "adam", "lr": 0.001, "weight_decay": 0.0,
                                                 "betas": [0.9, 0.999], "eps": 1e-7}
    assert (run / "preprocess" / "preprocessor.json").is_file()
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"val/y/accuracy", "val/z/mae", "val/z/rmse", "val/loss"} <= rows[-1].keys()
    assert (run / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    names = {p.name for p in (run / "checkpoints").iterdir()}
    assert {"last.json", "best.json"} <= names
    assert not [n for n in names if n.startswith(ckpt.TMP_PREFIX)]
    # only the files the pointers name are kept
    assert len([n for n in names if n.startswith("step-")]) <= 4


def test_refuses_to_overwrite_a_run(tmp_path):
    spec, data = _small(tmp_path, epochs=1)
    train(spec, data=str(data), out=str(tmp_path / "run"), progress=False, log=lambda *a: None)
    with pytest.raises(CheckpointError, match="already holds a run"):
        train(spec, data=str(data), out=str(tmp_path / "run"), progress=False, log=lambda *a: None)


def test_resume_with_changed_spec_is_refused(tmp_path):
    spec, data = _small(tmp_path, epochs=1)
    run = train(spec, data=str(data), out=str(tmp_path / "run"), progress=False, log=lambda *a: None)
    changed = tmp_path / "changed.yaml"
    changed.write_text(spec.read_text().replace("seed: 7", "seed: 8").replace("[32, 16]", "[32, 8]"))
    with pytest.raises(CheckpointError) as e:
        train(changed, data=str(data), resume=str(run), progress=False, log=lambda *a: None)
    msg = str(e.value)
    assert "training.seed: 7 → 8" in msg and "encoders.enc.layers" in msg


def test_nonfinite_loss_error_names_the_head(tmp_path):
    spec, data = _small(tmp_path, epochs=1)
    import pandas as pd

    df = pd.read_csv(data)
    df["z"] = df["z"] * 1e25  # squares overflow float32: the regression loss becomes inf
    df.to_csv(data, index=False)
    with pytest.raises(TrainingError, match=r"non-finite loss .* head z"):
        train(spec, data=str(data), out=str(tmp_path / "run"), progress=False, log=lambda *a: None)
    spec.write_text(spec.read_text() + "  on_nonfinite: skip\n")
    res = fit(spec, data=str(data), out=str(tmp_path / "run2"), progress=False, log=lambda *a: None)
    rows = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["skipped_steps"] == 9 and res.steps == 0
    assert all(torch.isfinite(p).all() for p in res.model.parameters())


def _train_cmd(*args):
    return [PY, "-m", "archspec", "train", "--progress", "lines", *args]


def _wait_for_step(run: Path, step: int, proc, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        p = ckpt.read_pointer(run / "checkpoints", "last", missing_ok=True) if (run / "checkpoints").is_dir() else None
        if p and p["step"] >= step:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.01)
    raise AssertionError("training did not reach the step in time")


@pytest.mark.integration
def test_sigkill_then_resume_is_bit_identical(tmp_path):
    spec, data = _small(tmp_path, epochs=6)
    # reference: uninterrupted
    ref = tmp_path / "ref"
    subprocess.run(_train_cmd(str(spec), "--data", str(data), "--out", str(ref)), env=ENV, check=True,
                   capture_output=True)
    # killed at a random step (between checkpoints or in the middle of writing one), then resumed
    run = tmp_path / "run"
    kill_at = random.Random().randint(2, 40)
    proc = subprocess.Popen(_train_cmd(str(spec), "--data", str(data), "--out", str(run)), env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_step(run, kill_at, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    res = subprocess.run(_train_cmd("--resume", str(run)), env=ENV, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "resumed" in res.stdout
    _assert_identical(_weights(ref), _weights(run))


@pytest.mark.integration
def test_sigint_stops_at_a_step_boundary_and_saves(tmp_path):
    spec, data = _small(tmp_path, epochs=6)
    ref = tmp_path / "ref"
    train(spec, data=str(data), out=str(ref), progress=False, log=lambda *a: None)
    run = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(str(spec), "--data", str(data), "--out", str(run)), env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_step(run, 5, proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "resume with: archspec train --resume" in out
    assert "Traceback" not in out
    res = subprocess.run(_train_cmd("--resume", str(run)), env=ENV, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    _assert_identical(_weights(ref), _weights(run))


DDP_SCRIPT = """
import sys, torch
from archspec.train import fit
torch.set_num_threads(1)
res = fit(sys.argv[1], data=sys.argv[2], out=sys.argv[3], progress=False, log=lambda *a: None)
import torch.distributed as dist
from safetensors.torch import save_file
save_file({k: v.contiguous() for k, v in res.model.state_dict().items()}, f"{sys.argv[3]}-rank{dist.get_rank()}.safetensors")
"""


@pytest.mark.integration
def test_two_process_ddp_matches_single_process(tmp_path):
    spec, data = _small(tmp_path, epochs=2, n=64)
    spec.write_text(spec.read_text().replace("dropout: 0.2", "dropout: 0.0"))
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    res = subprocess.run([PY, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script),
                          str(spec), str(data), str(tmp_path / "ddp")], env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    r0 = load_file(str(tmp_path / "ddp-rank0.safetensors"))
    r1 = load_file(str(tmp_path / "ddp-rank1.safetensors"))
    _assert_identical(r0, r1)  # DDP keeps both ranks in step
    single = fit(spec, data=str(data), out=str(tmp_path / "single"), progress=False, log=lambda *a: None)
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(r0[k], v, rtol=1e-5, atol=1e-6)
    # only rank 0 wrote the run directory
    assert (tmp_path / "ddp" / "metrics.jsonl").read_text().count("\n") == 2
    # the CLI launcher (`archspec train --nproc-per-node 2`) runs the same thing under torchrun
    cli = subprocess.run(_train_cmd(str(spec), "--data", str(data), "--out", str(tmp_path / "cli"),
                                    "--nproc-per-node", "2"), env=ENV, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "2 processes" in cli.stdout
    _assert_identical(_weights(tmp_path / "cli"), r0)


def test_evaluate_reports_trivial_baselines(tmp_path):
    spec, data = _small(tmp_path, epochs=3)
    run = train(spec, data=str(data), out=str(tmp_path / "run"), progress=False, log=lambda *a: None)
    metrics, base = evaluate(run, data, baseline=True)
    import pandas as pd

    df = pd.read_csv(data)
    # the majority-class baseline's accuracy is the majority share (of the evaluated file)
    train_major = json.loads((run / "baseline.json").read_text())["y"]["prior"]
    major = max(range(3), key=lambda c: train_major[c])
    assert base["y/accuracy"] == pytest.approx((df["y"] == major).mean())
    assert base["z/mae"] > metrics["z/mae"]  # the model beats the training mean
    from archspec.cli import main

    assert main(["evaluate", str(run), "--data", str(data), "--baseline"]) == 0


def test_popularity_baseline_ranks_frequent_items_first():
    from archspec.metrics import recall_at_k

    pair = torch.tensor([[3.0, 1.0, 0.0], [3.0, 1.0, 0.0], [3.0, 1.0, 0.0]])
    assert recall_at_k(pair, [1]) == {"recall@1": pytest.approx(1 / 3)}
    assert recall_at_k(pair, [2]) == {"recall@2": pytest.approx(2 / 3)}


def test_early_stopping_stops_when_the_metric_stalls(tmp_path):
    spec, data = _small(tmp_path, epochs=8)
    text = spec.read_text().replace("  checkpoint_every: 1\n", "  optimizer: {type: sgd, lr: 1.0e-12}\n"
                                    "  early_stopping: {metric: y/accuracy, patience: 2}\n")
    spec.write_text(text)
    logs = []
    run = train(spec, data=str(data), out=str(tmp_path / "run"), progress=False, log=logs.append)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3  # best at epoch 1, no improvement in 2 and 3
    assert any("early stopping: y/accuracy has not improved for 2 epochs" in str(m) for m in logs)
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert best["step"] == rows[0]["step"]


def test_build_exports_a_trained_run(tmp_path):
    """`archspec build RUN --export ...` ships the trained weights, not a fresh initialisation."""
    from archspec.cli import main
    from archspec.inference import load_run

    spec, data = _small(tmp_path, epochs=2)
    run = train(spec, data=str(data), out=str(tmp_path / "run"), progress=False, log=lambda *a: None)
    assert main(["build", str(run), "--export", "torchscript", "--out", str(tmp_path / "exp")]) == 0
    import pandas as pd

    model, pre, _ = load_run(run)
    manifest = json.loads((tmp_path / "exp" / "small.export.json").read_text())
    scripted = torch.jit.load(str(tmp_path / "exp" / manifest["files"]["torchscript"]))
    rows = pd.read_csv(data).head(5)
    # a run's export takes raw numeric values (standardised inside the graph), the model the transformed ones
    assert all(i["expects"] == "raw values" for i in manifest["inputs"])
    got = scripted(*[torch.tensor(rows[i["columns"]].to_numpy()) for i in manifest["inputs"]])
    want = model(pre.transform(rows, targets=False)[0])
    for out, spec_out in zip(got, manifest["outputs"]):
        torch.testing.assert_close(out, want[spec_out["name"]])


def test_gradient_accumulation_equals_the_larger_batch(tmp_path):
    """2 micro-batches of 8 per step train exactly like batches of 16 (no dropout)."""
    spec, data = _small(tmp_path, epochs=2)
    base = spec.read_text().replace("dropout: 0.2", "dropout: 0.0").replace("  checkpoint_every: 1\n", "")
    spec.write_text(base.replace("batch_size: 8", "batch_size: 8\n  grad_accumulation: 2"))
    acc = fit(spec, data=str(data), out=str(tmp_path / "acc"), progress=False, log=lambda *a: None)
    spec.write_text(base.replace("batch_size: 8", "batch_size: 16"))
    big = fit(spec, data=str(data), out=str(tmp_path / "big"), progress=False, log=lambda *a: None)
    assert acc.steps == big.steps == 10  # 72 training rows: 5 steps per epoch
    for k, v in big.model.state_dict().items():
        torch.testing.assert_close(acc.model.state_dict()[k], v, rtol=1e-5, atol=1e-6)


def test_resume_cleans_stale_temp_files(tmp_path):
    spec, data = _small(tmp_path, epochs=1)
    run = train(spec, data=str(data), out=str(tmp_path / "run"), progress=False, log=lambda *a: None)
    stale = run / "checkpoints" / (ckpt.TMP_PREFIX + "half-written")
    stale.write_bytes(b"\0" * 10)
    orphan = run / "checkpoints" / "step-00000999.safetensors"  # written, but no pointer names it
    orphan.write_bytes(b"\0" * 10)
    train(None, resume=str(run), epochs=2, progress=False, log=lambda *a: None)
    assert not stale.exists() and not orphan.exists()
