"""Self-contained exports and the torch-free runtime: a trained run of every shipped spec is exported
to ONNX with its preprocessing, then scored from raw rows by ``archspec.serving`` in a subprocess
where importing torch fails, and must match ``archspec predict`` to 1e-5."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from archspec.cli import main  # noqa: E402
from archspec.pipeline import check_file  # noqa: E402

from conftest import ROOT, SPECS  # noqa: E402
from datagen import make_frame  # noqa: E402

HEAVY = {"early_fusion", "late_fusion", "multitask_classifier", "multilabel_early_fusion"}  # transformers/CNNs
TOL = 1e-5

BLOCK_TORCH = """
import importlib.abc, sys
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, _NoTorch())
"""


def _serve(export_dir, data, out, towers=()):
    """Score ``data`` with archspec.serving in a fresh interpreter that cannot import torch."""
    code = BLOCK_TORCH + textwrap.dedent(f"""
        import json, sys
        import numpy as np, pandas as pd
        from archspec.serving import Predictor
        p = Predictor({str(export_dir)!r})
        rows = pd.read_csv({str(data)!r})
        cols = p.predict(rows, data_dir={str(data.parent)!r})
        res = {{k: (np.asarray(v).tolist()) for k, v in cols.items()}}
        for tower in {list(towers)!r}:
            res["embed." + tower] = p.embed(rows, tower).tolist()
        assert "torch" not in sys.modules
        json.dump(res, open({str(out)!r}, "w"))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def _frame(checked, tmp_path, n):
    df = make_frame(checked, n, tmp_path, seed=3)
    for name, cfg in checked.spec.inputs.items():
        if cfg.type == "categorical" and name.endswith("_id"):  # integer ids: looked up inside the graph
            df[cfg.column] = [int(str(v).rsplit("_", 1)[1]) * 7 + 100 for v in df[cfg.column]]
    return df


@pytest.mark.parametrize("spec", [pytest.param(p, id=p.stem, marks=[pytest.mark.integration] if p.stem in HEAVY else [])
                                  for p in SPECS])
def test_torch_free_serving_matches_predict(spec, tmp_path, capsys):
    from archspec.train import fit

    checked = check_file(spec)
    df = _frame(checked, tmp_path, 16)
    df.to_csv(tmp_path / "train.csv", index=False)
    test = _frame(checked, tmp_path, 6)
    if "user_id" in test:  # an id never seen in training, and a missing one
        test["user_id"] = test["user_id"].astype(object)
        test.loc[0, "user_id"], test.loc[1, "user_id"] = 99999, None
    test.to_csv(tmp_path / "test.csv", index=False)
    fit(spec, data=str(tmp_path / "train.csv"), out=str(tmp_path / "run"), max_steps=1, log=lambda *a: None)
    assert main(["predict", str(tmp_path / "run"), "--data", str(tmp_path / "test.csv"),
                 "--out", str(tmp_path / "pred.csv")]) == 0
    assert main(["build", str(tmp_path / "run"), "--export", "onnx", "--out", str(tmp_path / "export"),
                 "--format", "json"]) == 0
    manifest = json.loads(next((tmp_path / "export").glob("*.export.json")).read_text())
    assert manifest["preprocessing"]["state"] == "preprocess/preprocessor.json"
    assert (tmp_path / "export" / "preprocess" / "preprocessor.json").is_file()
    for i in manifest["inputs"]:  # (a gbdt head's scores come from its trees' own ONNX file)
        assert i["expects"] and i["transform"], i
        if i["kind"] == "tokens":
            assert (tmp_path / "export" / i["transform"]["tokenizer"]).is_file()
    towers = ("query", "candidate") if manifest.get("similarity") else ()
    got = _serve(tmp_path / "export", tmp_path / "test.csv", tmp_path / "served.json", towers)
    want = pd.read_csv(tmp_path / "pred.csv")
    assert sorted(k for k in got if not k.startswith("embed.")) == sorted(want.columns)
    for col in want.columns:
        w = want[col].to_numpy()
        if w.dtype.kind == "f":
            np.testing.assert_allclose(np.asarray(got[col], dtype=np.float64), w, atol=TOL, rtol=TOL, err_msg=col)
        else:
            assert [str(x) for x in got[col]] == ["" if pd.isna(x) else str(x) for x in w], col
    if towers:
        from archspec import retrieval as rt

        for side in towers:
            rt.embed(tmp_path / "run", tmp_path / "test.csv", tmp_path / f"{side}.npy", side=side)
            np.testing.assert_allclose(np.asarray(got[f"embed.{side}"]), np.load(tmp_path / f"{side}.npy"), atol=TOL)


def test_numeric_and_integer_categories_are_transformed_inside_the_graph(tmp_path):
    """Fed raw values, the ONNX graph alone (no runtime) reproduces the trained model."""
    import onnxruntime as ort

    from archspec.inference import load_run
    from archspec.train import fit

    spec = tmp_path / "s.yaml"
    spec.write_text("archspec: 1\nname: raw\ninputs:\n  x: {type: numeric, columns: [a, b]}\n"
                    "  item: {type: categorical, column: item, max_categories: 10}\n"
                    "encoders:\n  e: {type: embedding, input: item, dim: 3}\n"
                    "fusions:\n  f: {type: early, inputs: [x, e], layers: [4]}\n"
                    "heads:\n  y: {type: regression, from: f}\ntraining: {validation_split: 0}\n")
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(100, 20, 30), "b": rng.normal(-5, 0.1, 30),
                       "item": rng.choice([11, 22, 33, 44], 30), "y": rng.normal(size=30)})
    df.to_csv(tmp_path / "train.csv", index=False)
    fit(spec, data=str(tmp_path / "train.csv"), out=str(tmp_path / "run"), max_steps=2, log=lambda *a: None)
    assert main(["build", str(tmp_path / "run"), "--export", "onnx", "--out", str(tmp_path / "ex")]) == 0
    m = json.loads((tmp_path / "ex" / "raw.export.json").read_text())
    x_spec, item_spec = m["inputs"]
    assert x_spec["dtype"] == "float64" and x_spec["columns"] == ["a", "b"]
    assert x_spec["transform"]["in_graph"] == "(x - shift) / scale"
    assert item_spec["expects"] == "raw values (integer categories)" and item_spec["column"] == "item"
    rows = pd.DataFrame({"a": [90.0, 130.0, 100.0], "b": [-5.1, -4.9, -5.0], "item": [22, 55, 11]})  # 55: unseen
    sess = ort.InferenceSession(str(tmp_path / "ex" / "raw.onnx"), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"x": rows[["a", "b"]].to_numpy(np.float64), "item": rows["item"].to_numpy(np.int64)})
    model, pre, _ = load_run(tmp_path / "run")
    x, _ = pre.transform(rows, targets=False)
    assert x["item"].tolist()[1] == 0
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x)["y"].numpy(), atol=TOL)


def test_a_spec_export_has_no_preprocessing_and_serving_says_so(tmp_path):
    from archspec.serving import Predictor, ServingError

    assert main(["build", str(ROOT / "specs" / "two_tower.yaml"), "--export", "onnx", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "two_tower.export.json").read_text())["preprocessing"] is None
    with pytest.raises(ServingError, match="carries no preprocessing"):
        Predictor(tmp_path)
    with pytest.raises(ServingError, match="no export manifest"):
        Predictor(tmp_path / "nowhere")
