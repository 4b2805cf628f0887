"""Gradient-boosted heads (`type: gbdt`): fit, evaluate, predict, text model files, late fusion, resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from archspec.errors import CheckpointError
from archspec.export import ExportError
from archspec.inference import evaluate, load_run, predict
from archspec.train import fit

QUIET = dict(progress=False, log=lambda *a: None)


def _data(tmp_path, n=240, seed=0):
    r = np.random.default_rng(seed)
    a, b = r.normal(size=n), r.normal(size=n)
    c = r.choice(["x", "y", "z"], n)
    y = np.where(a + (c == "x") > 0.5, "hi", np.where(b > 0, "mid", "lo"))
    df = pd.DataFrame({"a": a, "b": b, "c": c, "y": y, "v": 2 * a + b, "t": (a > 0).astype(int),
                       "tags": [("p|" if x > 0 else "") + ("q" if z > 0 else "") for x, z in zip(a, b)]})
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    return path, df


TABULAR = """archspec: 1
name: trees
inputs:
  num: {type: numeric, columns: [a, b]}
  cat: {type: categorical, column: c}
heads:
  y: {type: gbdt, inputs: [num, cat], task: multiclass, classes: [hi, mid, lo], trees: 40, num_leaves: 7}
  t: {type: gbdt, inputs: [num], task: binary, trees: 30, min_child_samples: 5}
  v: {type: gbdt, inputs: [num, cat], task: regression, trees: 60, learning_rate: 0.2}
  tags: {type: gbdt, inputs: [num], task: multilabel, labels: [p, q], trees: 20}
training:
  epochs: 1
  batch_size: 32
  seed: 3
"""


def _spec(tmp_path, text, name="spec.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_gbdt_fit_evaluate_predict_and_text_models(tmp_path):
    data, df = _data(tmp_path)
    res = fit(_spec(tmp_path, TABULAR), data=str(data), out=str(tmp_path / "run"), **QUIET)
    run = res.run_dir
    files = sorted(p.name for p in (run / "gbdt").iterdir())
    assert files == ["t.txt", "tags.0.txt", "tags.1.txt", "v.0.txt", "y.txt"]
    for f in (run / "gbdt").iterdir():  # LightGBM's own text format, never a pickle
        assert f.read_text().startswith("tree\nversion=")
    assert not [p for p in run.rglob("*") if p.suffix in (".pkl", ".pickle", ".joblib")]
    m = evaluate(run, data)
    assert m["y/accuracy"] > 0.9 and m["t/accuracy"] > 0.9 and m["v/mae"] < 0.5
    assert "tags/binary_accuracy" in m and "y/loss" in m
    out = tmp_path / "p.csv"
    predict(run, data, out)
    p = pd.read_csv(out)
    assert (p["y"] == df["y"]).mean() > 0.9
    assert {"t.prob", "y.prob.hi", "v"} <= set(p.columns)
    # round trip: the loaded run predicts exactly what the fitted model did
    model, _, _ = load_run(run)
    batch = {"num": torch.tensor(df[["a", "b"]].to_numpy()[:5], dtype=torch.float32),
             "cat": torch.tensor([1, 2, 3, 0, 1])}
    torch.testing.assert_close(model(batch)["y"], res.model.eval()(batch)["y"])
    assert model.node_module("y").trees() > 0


def test_gbdt_head_reads_only_inputs():
    from archspec.pipeline import check_text

    text = TABULAR.replace("heads:\n", "encoders:\n  e: {type: mlp, input: num, layers: [4]}\nheads:\n") \
        .replace("inputs: [num], task: binary", "inputs: [e], task: binary")
    errs = [d for d in check_text(text, "s.yaml").diagnostics if d.code == "E-MODALITY"]
    assert len(errs) == 1
    msg = errs[0].render()
    assert "s.yaml:" in msg and "heads.t.inputs[0]" in msg and "tabular inputs" in msg


FUSED = """archspec: 1
name: fused
inputs:
  num: {type: numeric, columns: [a, b]}
  cat: {type: categorical, column: c}
encoders:
  mlp: {type: mlp, input: num, layers: [8]}
heads:
  nn: {type: multiclass, from: mlp, classes: [hi, mid, lo], target: y}
  trees: {type: gbdt, inputs: [num, cat], task: multiclass, classes: [hi, mid, lo], trees: 20, target: y}
fusions:
  y: {type: late, inputs: [nn, trees], weights: [0.6, 0.4], training: independent}
training:
  epochs: 1
  batch_size: 32
"""


def test_late_fusion_of_gbdt_and_neural_is_the_weighted_average(tmp_path):
    data, df = _data(tmp_path)
    res = fit(_spec(tmp_path, FUSED), data=str(data), out=str(tmp_path / "run"), **QUIET)
    model = res.model.eval()
    batch = {"num": torch.randn(7, 2), "cat": torch.randint(0, 4, (7,))}
    out = model(batch)
    by_hand = 0.6 * torch.softmax(out["nn"], -1) + 0.4 * torch.softmax(out["trees"], -1)
    torch.testing.assert_close(out["y"], by_hand)
    # the trees' own output is LightGBM's raw score
    booster = model.node_module("trees").boosters[0]
    x = np.concatenate([batch["num"].double().numpy(), batch["cat"].double().numpy()[:, None]], axis=1)
    np.testing.assert_allclose(out["trees"].numpy(), booster.predict(x, raw_score=True), rtol=1e-5, atol=1e-5)
    # no torch parameters in the gbdt head; only onnx carries it (tests/test_gbdt_export.py)
    assert model.parameter_counts("trees") == (0, 0)
    from archspec.export import export  # noqa: I001

    with pytest.raises(ExportError, match="not exportable to torch_export.*--export onnx"):
        export(model, tmp_path / "ex", ["torch_export"])


def test_resume_keeps_the_fitted_trees(tmp_path):
    data, _ = _data(tmp_path)
    logs = []
    run = fit(_spec(tmp_path, FUSED), data=str(data), out=str(tmp_path / "run"), **QUIET).run_dir
    tree_file = run / "gbdt" / "trees.txt"
    before = (tree_file.read_bytes(), tree_file.stat().st_mtime_ns)
    res = fit(None, resume=str(run), epochs=2, progress=False, log=logs.append)
    assert (tree_file.read_bytes(), tree_file.stat().st_mtime_ns) == before
    assert any("trees loaded" in line for line in logs)
    assert res.model.node_module("trees").trees() > 0
    assert evaluate(run, data)["y/accuracy"] > 0.5
    tree_file.unlink()
    with pytest.raises(CheckpointError, match="no model file trees.txt"):
        load_run(run)
