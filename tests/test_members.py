"""Late fusion of heads from other trained runs (`type: run`): no retraining, swap one member, checks."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from archspec.inference import evaluate, predict
from archspec.pipeline import check_text
from archspec.train import fit

QUIET = dict(progress=False, log=lambda *a: None)

NEURAL = """archspec: 1
name: text_model
inputs:
  num: {{type: numeric, columns: [a, b]}}
encoders:
  mlp: {{type: mlp, input: num, layers: [8]}}
heads:
  topic: {{type: multiclass, from: mlp, classes: [hi, mid, lo], target: y}}
training:
  epochs: {epochs}
  batch_size: 32
  seed: {seed}
"""

TREES = """archspec: 1
name: tab_model
inputs:
  num: {type: numeric, columns: [a, b]}
  cat: {type: categorical, column: c}
heads:
  genre: {type: gbdt, inputs: [num, cat], task: multiclass, classes: [hi, mid, lo], trees: 15, target: y}
"""

FUSED = """archspec: 1
name: fused
inputs: {}
heads:
  text: {type: run, run: runs/text_model, head: topic}
  tab: {type: run, run: runs/tab_model, head: genre}
fusions:
  y: {type: late, inputs: [text, tab], weights: [0.6, 0.4]}
"""


def _data(tmp_path, n=160):
    r = np.random.default_rng(1)
    a, b = r.normal(size=n), r.normal(size=n)
    c = r.choice(["x", "y", "z"], n)
    y = np.where(a + (c == "x") > 0.5, "hi", np.where(b > 0, "mid", "lo"))
    path = tmp_path / "d.csv"
    pd.DataFrame({"a": a, "b": b, "c": c, "y": y}).to_csv(path, index=False)
    return path


def _train(tmp_path, text, out, data):
    spec = tmp_path / f"{out.replace('/', '_')}.yaml"
    spec.write_text(text)
    return fit(spec, data=str(data), out=str(tmp_path / out), **QUIET).run_dir


def _probs(path) -> np.ndarray:
    p = pd.read_csv(path)
    return p[[c for c in p.columns if ".prob." in c]].to_numpy()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("members")
    data = _data(tmp)
    _train(tmp, NEURAL.format(epochs=2, seed=0), "runs/text_model", data)
    _train(tmp, TREES, "runs/tab_model", data)
    _train(tmp, NEURAL.format(epochs=1, seed=5), "runs/other_text", data)
    return tmp, data


def _member_probs(tmp, data, run):
    out = tmp / f"{run.replace('/', '_')}.csv"
    predict(tmp / run, data, out)
    return _probs(out)


def test_fusion_of_runs_is_the_weighted_average_of_their_predictions(runs):
    tmp, data = runs
    logs = []
    spec = tmp / "fused.yaml"
    spec.write_text(FUSED)
    run = fit(spec, data=str(data), out=str(tmp / "runs/fused"), progress=False, log=logs.append).run_dir
    assert any("nothing to train" in x for x in logs)
    predict(run, data, tmp / "fused.csv")
    fused = pd.read_csv(tmp / "fused.csv")
    text, tab = _member_probs(tmp, data, "runs/text_model"), _member_probs(tmp, data, "runs/tab_model")
    y = fused[["y.prob.hi", "y.prob.mid", "y.prob.lo"]].to_numpy()
    np.testing.assert_allclose(y, 0.6 * text + 0.4 * tab, rtol=1e-5, atol=1e-6)
    m = evaluate(run, data)
    assert {"text/accuracy", "tab/accuracy", "y/accuracy"} <= m.keys()

    # replace one member run: only its part changes, nothing is retrained
    before_tab = fused[["tab.prob.hi", "tab.prob.mid", "tab.prob.lo"]].to_numpy()
    shutil.rmtree(tmp / "runs/text_model")
    shutil.copytree(tmp / "runs/other_text", tmp / "runs/text_model")
    predict(run, data, tmp / "fused2.csv")
    fused2 = pd.read_csv(tmp / "fused2.csv")
    other = _member_probs(tmp, data, "runs/other_text")
    np.testing.assert_allclose(fused2[["tab.prob.hi", "tab.prob.mid", "tab.prob.lo"]].to_numpy(), before_tab)
    np.testing.assert_allclose(fused2[["text.prob.hi", "text.prob.mid", "text.prob.lo"]].to_numpy(), other,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused2[["y.prob.hi", "y.prob.mid", "y.prob.lo"]].to_numpy(), 0.6 * other + 0.4 * tab,
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(other, text)


def test_learned_weights_train_only_the_combination(runs):
    tmp, data = runs
    spec = tmp / "learned.yaml"
    spec.write_text(FUSED.replace("weights: [0.6, 0.4]", "combine: learned, loss: {type: nll}")
                    + "training:\n  epochs: 2\n  batch_size: 32\n")
    res = fit(spec, data=str(data), out=str(tmp / "runs/learned"), **QUIET)
    trainable = [n for n, p in res.model.named_parameters() if p.requires_grad]
    assert trainable == ["fusions.y.weight_logits"]
    assert evaluate(res.run_dir, data)["y/accuracy"] > 0.5


def test_member_with_another_label_space_is_a_located_error(runs):
    tmp, data = runs
    _train(tmp, TREES.replace("classes: [hi, mid, lo]", "classes: [hi, mid, lo, none]"), "runs/four", data)
    text = FUSED.replace("runs/tab_model", "runs/four")
    c = check_text(text, str(tmp / "bad.yaml"), base_dir=tmp)
    errs = [d.render() for d in c.errors]
    assert len(errs) == 1 and "E-LATE-LABELS" in errs[0]
    assert "bad.yaml:8:34" in errs[0] and "fusions.y.inputs[1]" in errs[0] and "4 classes" in errs[0]
    c = check_text(FUSED.replace("head: genre", "head: genr"), str(tmp / "bad.yaml"), base_dir=tmp)
    err = c.errors[0].render()
    assert "E-RUN-MEMBER" in err and "bad.yaml:6:" in err and "genre" in err
    c = check_text(FUSED.replace("runs/tab_model", "runs/nowhere"), str(tmp / "bad.yaml"), base_dir=tmp)
    assert "E-RUN-MEMBER" in c.errors[0].render() and "not a trained run" in c.errors[0].render()
