"""ONNX export of gradient-boosted heads and of members from other runs, served without torch.

A trained run with `type: gbdt` heads (every task), a late fusion of trees and a neural head (fixed
weights, a vote, learned weights) and a fusion of two member runs (`type: run`, one of them trees)
are exported with ``archspec build RUN --export onnx`` and scored from raw rows by
``archspec.serving`` in a process that cannot import torch; the columns must match
``archspec predict`` to 1e-5 (labels identical).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("lightgbm")
pytest.importorskip("onnxmltools")
pytest.importorskip("onnxruntime")

from archspec.cli import main  # noqa: E402
from archspec.export import ExportError, export  # noqa: E402
from archspec.train import fit  # noqa: E402

from test_gbdt import TABULAR, _data  # noqa: E402
from test_serving import TOL, _serve  # noqa: E402

QUIET = dict(progress=False, log=lambda *a: None)

FUSIONS = """archspec: 1
name: fused
inputs:
  num: {type: numeric, columns: [a, b]}
  cat: {type: categorical, column: c}
  vec: {type: vector, column: w, width: 2}
encoders:
  mlp: {type: mlp, input: num, layers: [8]}
heads:
  nn: {type: multiclass, from: mlp, classes: [hi, mid, lo], target: y}
  trees: {type: gbdt, inputs: [num, cat, vec], task: multiclass, classes: [hi, mid, lo], trees: 25,
          num_leaves: 7, min_child_samples: 5, target: y}
fusions:
  y: {type: late, inputs: [nn, trees], weights: [0.6, 0.4], training: independent}
  y_vote: {type: late, inputs: [nn, trees], combine: hard_vote, weights: [0.4, 0.6], target: y}
  y_learned: {type: late, inputs: [nn, trees], combine: learned, loss: {type: nll}, target: y,
              training: independent}
training:
  epochs: 1
  batch_size: 32
  seed: 1
"""


def _export_and_compare(run, data, tmp_path):
    pred, out = tmp_path / "pred.csv", tmp_path / "export"
    assert main(["predict", str(run), "--data", str(data), "--out", str(pred)]) == 0
    assert main(["build", str(run), "--export", "onnx", "--out", str(out), "--format", "json"]) == 0
    got = _serve(out, data, tmp_path / "served.json")
    want = pd.read_csv(pred)
    assert sorted(got) == sorted(want.columns)
    for col in want.columns:
        w = want[col].to_numpy()
        if w.dtype.kind == "f":
            np.testing.assert_allclose(np.asarray(got[col], dtype=np.float64), w, atol=TOL, rtol=TOL, err_msg=col)
        else:
            assert [str(x) for x in got[col]] == ["" if pd.isna(x) else str(x) for x in w], col
    return json.loads(next(out.glob("*.export.json")).read_text()), out


def test_gbdt_heads_of_every_task_export_to_onnx_and_serve_without_torch(tmp_path):
    data, _ = _data(tmp_path)
    spec = tmp_path / "trees.yaml"
    spec.write_text(TABULAR)
    run = fit(spec, data=str(data), out=str(tmp_path / "run"), **QUIET).run_dir
    manifest, out = _export_and_compare(run, data, tmp_path)
    assert sorted(manifest["gbdt"]) == ["t", "tags", "v", "y"]
    y = manifest["gbdt"]["y"]
    assert y["file"] == "trees.y.gbdt.onnx" and (out / y["file"]).is_file()
    assert y["output"] == {"name": "scores", "dtype": "float32", "shape": ["batch", 3],
                           "meaning": "the trees' raw scores (logits for classification, values for regression)",
                           "feeds": "y.gbdt"}
    assert [c["input"] for c in y["features"]["layout"]] == ["num", "cat"]
    assert y["features"]["shape"] == ["batch", 3] and y["trees"] > 0
    assert manifest["gbdt"]["tags"]["boosters"] == 2 and manifest["gbdt"]["t"]["output"]["shape"] == ["batch"]
    # the neural graph takes each head's scores as an input
    assert {i["name"] for i in manifest["inputs"]} == {"y.gbdt", "t.gbdt", "v.gbdt", "tags.gbdt"}


def test_late_fusions_of_trees_and_a_neural_head_export_and_serve(tmp_path):
    data, df = _data(tmp_path)
    df["w"] = [json.dumps([float(x), float(x) * 0.5 - 1]) for x in df["b"]]
    df.to_csv(data, index=False)
    spec = tmp_path / "fused.yaml"
    spec.write_text(FUSIONS)
    run = fit(spec, data=str(data), out=str(tmp_path / "run"), **QUIET).run_dir
    manifest, _ = _export_and_compare(run, data, tmp_path)
    assert list(manifest["gbdt"]) == ["trees"]
    assert [c["input"] for c in manifest["gbdt"]["trees"]["features"]["layout"]] == ["num", "cat", "vec"]
    assert {o["name"] for o in manifest["outputs"]} == {"nn", "trees", "y", "y_vote", "y_learned"}
    # `cat` and `vec` are read by the trees only: the neural graph does not take them
    assert {i["name"] for i in manifest["inputs"]} == {"num", "trees.gbdt"}
    from archspec.server import ExportPredictor

    assert [i["name"] for i in ExportPredictor(tmp_path / "export").metadata()["inputs"]] == ["num", "cat", "vec"]


def test_members_from_runs_export_with_their_own_preprocessing(tmp_path):
    from test_members import FUSED, NEURAL, TREES
    from test_members import _data as member_data
    from test_members import _train

    data = member_data(tmp_path)
    _train(tmp_path, NEURAL.format(epochs=1, seed=0), "runs/text_model", data)
    _train(tmp_path, TREES, "runs/tab_model", data)
    spec = tmp_path / "fused.yaml"
    spec.write_text(FUSED)
    run = fit(spec, data=str(data), out=str(tmp_path / "fused"), **QUIET).run_dir
    manifest, out = _export_and_compare(run, data, tmp_path)
    assert sorted(manifest["members"]) == ["tab", "text"]
    tab = manifest["members"]["tab"]
    assert tab["dir"] == "members/tab" and tab["feeds"] == "tab.member" and tab["output"] == "genre"
    sub = json.loads((out / tab["manifest"]).read_text())
    assert list(sub["gbdt"]) == ["genre"]  # a member run with trees brings its trees' file along
    assert {i["name"] for i in manifest["inputs"]} == {"text.member", "tab.member"}
    # `archspec serve EXPORT_DIR` describes the raw columns the members read
    from archspec.server import ExportPredictor

    meta = ExportPredictor(out).metadata()
    assert {(i["name"], tuple(i["columns"])) for i in meta["inputs"]} == {("num", ("a", "b")), ("cat", ("c",))}
    assert ExportPredictor(out).predict([{"a": 0.1, "b": -0.2, "c": "x"}])[0]["y"] in ("hi", "mid", "lo")


def test_what_cannot_be_exported_says_why(tmp_path):
    from archspec.build import compile_spec

    data, _ = _data(tmp_path)
    spec = tmp_path / "trees.yaml"
    spec.write_text(TABULAR)
    untrained = compile_spec(spec)
    with pytest.raises(ExportError, match=r"heads\.\w+ \(gbdt\) has no fitted trees.*export the run"):
        export(untrained, tmp_path / "a", ["onnx"])
    model = fit(spec, data=str(data), out=str(tmp_path / "run"), **QUIET).model
    with pytest.raises(ExportError, match=r"heads\.\w+ \(gbdt\) is not exportable to torchscript.*--export onnx"):
        export(model, tmp_path / "b", ["onnx", "torchscript"])


def test_tree_thresholds_are_exact_for_float32_features():
    """A feature equal to a threshold rounded to float32 goes the way LightGBM sends it."""
    import lightgbm as lgb
    import onnxruntime as ort
    import torch

    from archspec import gbdt
    from archspec.nn.gbdt import GBDTHead

    r = np.random.default_rng(0)
    x = r.normal(size=(300, 3)).astype(np.float32)
    y = x[:, 0] * 3 + np.sin(x[:, 1] * 4) + x[:, 2]
    booster = lgb.train({"objective": "regression", "num_leaves": 15, "min_child_samples": 3, "verbose": -1},
                        lgb.Dataset(x.astype(np.float64), label=y), 40)
    thresholds: list = []
    stack = [t["tree_structure"] for t in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_index" in node:
            thresholds.append((node["split_feature"], node["threshold"]))
            stack += [node["left_child"], node["right_child"]]
    rows = np.repeat(x[:1], len(thresholds), axis=0)
    for k, (feature, t) in enumerate(thresholds):
        rows[k, feature] = np.float32(t)  # the nearest float32: above t about half the time
    head = GBDTHead("regression", 1, [False], [3])
    head.set_boosters([booster])
    session = ort.InferenceSession(gbdt.to_onnx(head, "v").SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"features": gbdt.onnx_features(head, [torch.from_numpy(rows)])})[0][:, 0]
    want = booster.predict(rows.astype(np.float64), raw_score=True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
