"""Exports (TorchScript, torch.export, ONNX) load back and match the eager model on a batch size other
than the example's, so the batch dimension really is dynamic; two-tower models also export each
tower on its own, with the metric the index must use."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from archspec import export as ex  # noqa: E402
from archspec.build import compile_spec  # noqa: E402
from archspec.cli import main  # noqa: E402

from conftest import ROOT  # noqa: E402

try:
    import onnxruntime  # noqa: F401

    HAVE_ORT = True
except ImportError:
    HAVE_ORT = False

SPECS = {
    "two_tower": ROOT / "specs" / "two_tower.yaml",
    "late_fusion": ROOT / "specs" / "late_fusion.yaml",  # BERT + MLP, late fusion of probabilities
    "multitask_classifier": ROOT / "specs" / "multitask_classifier.yaml",  # BERT, three heads
}
TRANSFORMER = {"late_fusion", "multitask_classifier"}
TOL = dict(atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module", params=[
    "two_tower",
    pytest.param("late_fusion", marks=pytest.mark.integration),
    pytest.param("multitask_classifier", marks=pytest.mark.integration),
])
def exported(request, tmp_path_factory):
    return _export_once(request.param, tmp_path_factory)


_EXPORTS: dict = {}


def _export_once(name, tmp_path_factory):
    """Each spec is exported once per test session, in every format (exporting dominates the time)."""
    if name not in _EXPORTS:
        model = compile_spec(SPECS[name])
        if name == "two_tower":
            with torch.no_grad():  # move the learned scale off 1 so the manifest's calibration matters
                model.heads["match"].scale.fill_(3.0)
                model.heads["match"].bias.fill_(-0.5)
        out = tmp_path_factory.mktemp(name)
        result = ex.export(model, out, ex.FORMATS)
        model.eval()
        _EXPORTS[name] = (name, model, result, out)
    return _EXPORTS[name]


def _skip_onnx_without_runtime(name, fmt):
    # onnx.reference cannot run BERT (its GatherElements fails), so transformer graphs need onnxruntime.
    # onnxruntime is in the `test` extra: its absence is an install bug, not a reason to skip.
    assert HAVE_ORT or fmt != "onnx" or name not in TRANSFORMER, "install the test extra (onnxruntime)"


def _batch(model, size, seed):
    return ex._varied_masks(model.example_batch(size, seed=seed))


@pytest.mark.parametrize("fmt", ex.FORMATS)
@pytest.mark.parametrize("size", [1, 5])
def test_export_matches_eager_on_another_batch_size(exported, fmt, size):
    name, model, result, out = exported
    _skip_onnx_without_runtime(name, fmt)
    run = ex.load(out / result.manifest["files"][fmt], fmt)
    batch = _batch(model, size, seed=7)
    with torch.no_grad():
        want = model(batch)
    got = run(*(batch[i["name"]] for i in result.manifest["inputs"]))
    assert [o["name"] for o in result.manifest["outputs"]] == list(want)
    for spec, g in zip(result.manifest["outputs"], got):
        assert g.shape[0] == size
        torch.testing.assert_close(g, want[spec["name"]], **TOL)


def test_manifest_describes_inputs_and_outputs(exported):
    name, model, result, out = exported
    m = json.loads((out / f"{name}.export.json").read_text())
    assert m == json.loads(json.dumps(result.manifest))
    assert m["name"] == name and m["batch_dim"] == "batch" and m["formats"] == list(ex.FORMATS)
    assert [i["name"] for i in m["inputs"]] == model.input_keys()
    example = model.example_batch(2)
    for i in m["inputs"]:
        assert i["shape"][0] == "batch" and i["shape"][1:] == list(example[i["name"]].shape[1:])
        assert i["dtype"] == str(example[i["name"]].dtype).removeprefix("torch.")
    for o in m["outputs"]:
        assert o["shape"][0] == "batch"
    for fmt, file in m["files"].items():
        assert (out / file).is_file(), file
    outputs = {o["name"]: o for o in m["outputs"]}
    if name == "multitask_classifier":
        assert m["inputs"][1] == {"name": "film.mask", "dtype": "int64", "shape": ["batch", 64],
                                  "kind": "attention_mask"}
        assert outputs["reception"]["labels"] == ["rotten", "fresh", "acclaimed"]
        assert outputs["reception"]["activation"] == "softmax" and len(outputs["decade"]["labels"]) == 8
        assert outputs["genres"]["kind"] == "logits" and outputs["genres"]["activation"] == "sigmoid"
    if name == "late_fusion":
        assert outputs["reception"]["kind"] == "probs" and outputs["reception"]["activation"] is None
        assert outputs["reception"]["labels"] == ["rotten", "fresh", "acclaimed"]
        assert outputs["text_reception"]["kind"] == "logits"
    if name == "two_tower":
        assert outputs["match"]["kind"] == "score" and outputs["match.query"]["kind"] == "embedding"


def test_onnx_graph_has_a_named_batch_axis(exported):
    import onnx

    name, model, result, out = exported
    graph = onnx.load(str(out / result.manifest["files"]["onnx"]), load_external_data=False).graph
    assert [i.name for i in graph.input] == model.input_keys()
    assert [o.name for o in graph.output] == [o["name"] for o in result.manifest["outputs"]]
    for v in list(graph.input) + list(graph.output):
        assert v.type.tensor_type.shape.dim[0].dim_param == "batch", v.name


# ------------------------------------------------------------------------------------- two towers


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    return _export_once("two_tower", tmp_path_factory)[1:]


@pytest.mark.parametrize("fmt", ex.FORMATS)
@pytest.mark.parametrize("side", ["query", "candidate"])
def test_each_tower_exports_on_its_own(towers, fmt, side):
    model, result, out = towers
    tower = result.manifest["similarity"]["match"][side]
    node = {"query": "user_tower", "candidate": "item_tower"}[side]
    assert tower["node"] == node
    assert [i["name"] for i in tower["inputs"]] == model.input_keys([node]) == [f"{node[:4]}_features"]
    assert tower["outputs"][0]["shape"] == ["batch", 32]
    batch = model.example_batch(6, seed=3)
    with torch.no_grad():
        want = model.encode(batch, node)
    (got,) = ex.load(out / tower["files"][fmt], fmt)(*(batch[i["name"]] for i in tower["inputs"]))
    torch.testing.assert_close(got, want, **TOL)


def test_a_tower_export_carries_only_its_own_weights(towers):
    model, _, _ = towers
    for side, node in (("query", "user_tower"), ("candidate", "item_tower")):
        keys = list(ex.flat_tower(model, "match", side).state_dict())
        assert keys and all(k.startswith(f"module.nodes.{node}.") for k in keys), keys


def test_tower_manifest_reproduces_the_trained_score(towers):
    """What a serving system does: embed both sides with the tower exports, index with the recorded
    metric, and get back the score the model was trained with."""
    model, result, out = towers
    sim = result.manifest["similarity"]["match"]
    assert sim["metric"] == "cosine"
    assert sim["index"] == {"normalize": "l2", "metric": "inner_product"}
    assert (sim["scale"], sim["bias"], sim["temperature"]) == (3.0, -0.5, None)
    batch = model.example_batch(4, seed=11)
    (q,) = ex.load(out / sim["query"]["files"]["onnx"])(batch["user_features"])
    (c,) = ex.load(out / sim["candidate"]["files"]["onnx"])(batch["item_features"])
    q, c = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(c, dim=-1)
    score = sim["scale"] * (q * c).sum(-1) + sim["bias"]
    with torch.no_grad():
        torch.testing.assert_close(score, model(batch)["match"], **TOL)


def test_contrastive_towers_read_only_their_inputs(tmp_path):
    model = compile_spec(ROOT / "specs" / "two_tower_contrastive.yaml")
    result = ex.export(model, tmp_path, ["torch_export"])
    sim = result.manifest["similarity"]["retrieval"]
    assert [i["name"] for i in sim["query"]["inputs"]] == ["history", "history.mask", "user_features"]
    assert [i["name"] for i in sim["candidate"]["inputs"]] == ["movie_id", "movie_title", "movie_title.mask",
                                                               "movie_genres", "movie_genres.mask", "movie_features"]
    assert sim["temperature"] is None and "scale" not in sim  # the loss's learned temperature is not in the score
    model.eval()
    batch = _batch(model, 5, seed=2)
    (c,) = ex.load(tmp_path / sim["candidate"]["files"]["torch_export"])(
        *(batch[i["name"]] for i in sim["candidate"]["inputs"]))
    with torch.no_grad():
        torch.testing.assert_close(c, model.encode(batch, "movie_side"), **TOL)


def test_a_tower_that_is_an_input_and_an_unused_input(tmp_path):
    spec = tmp_path / "edge.yaml"
    spec.write_text("""\
archspec: 1
name: edge
inputs:
  u: {type: numeric, columns: [a, b, c]}
  v: {type: numeric, columns: [d, e]}
  unused: {type: numeric, columns: [z]}
encoders:
  vt: {type: mlp, input: v, layers: [3]}
heads:
  sim: {type: similarity, query: u, candidate: vt, metric: euclidean, temperature: 0.5}
""")
    model = compile_spec(spec)
    result = ex.export(model, tmp_path, ["torch_export", "onnx"])
    m = result.manifest
    assert [i["name"] for i in m["inputs"]] == ["u", "v", "unused"]  # every input, even an unused one
    sim = m["similarity"]["sim"]
    assert sim["index"] == {"normalize": None, "metric": "l2"} and sim["score"] == "-‖q - c‖ / temperature"
    assert [i["name"] for i in sim["query"]["inputs"]] == ["u"]
    model.eval()
    batch = model.example_batch(4, seed=5)
    (q,) = ex.load(tmp_path / sim["query"]["files"]["onnx"])(batch["u"])
    (c,) = ex.load(tmp_path / sim["candidate"]["files"]["torch_export"])(batch["v"])
    with torch.no_grad():
        torch.testing.assert_close(q, batch["u"])
        torch.testing.assert_close(-torch.linalg.vector_norm(q - c, dim=-1) / 0.5, model(batch)["sim"], **TOL)


# ---------------------------------------------------------------------------------- CLI and errors


def test_module_doctests():
    import doctest

    result = doctest.testmod(ex, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_cli_exports_and_lists_the_files(tmp_path, capsys):
    rc = main(["build", str(SPECS["two_tower"]), "--export", "torch_export", "--out", str(tmp_path),
               "--format", "json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    data = json.loads(out)
    manifest = tmp_path / "two_tower.export.json"
    assert data["exports"]["manifest"] == str(manifest) and manifest.is_file()
    names = sorted(p.rsplit("/", 1)[1] for p in data["exports"]["files"])
    assert names == ["two_tower.match.candidate.pt2", "two_tower.match.query.pt2", "two_tower.pt2"]
    (score, q, c) = ex.load(tmp_path / "two_tower.pt2")(torch.randn(1, 8), torch.randn(1, 9))
    assert score.shape == (1,) and q.shape == c.shape == (1, 32)


def test_exporter_failure_is_an_export_error(tmp_path, monkeypatch, capsys):
    def boom(*args, **kwargs):
        raise RuntimeError("data-dependent control flow\nmore details")

    monkeypatch.setattr(torch.export, "export", boom)
    rc = main(["build", str(SPECS["two_tower"]), "--export", "torch_export", "--out", str(tmp_path)])
    _, err = capsys.readouterr()
    assert rc == 1
    assert err.strip().endswith("archspec: error: torch_export export of 'two_tower' failed: "
                                "data-dependent control flow")
    assert not (tmp_path / "two_tower.export.json").exists()


def test_an_export_that_differs_from_the_model_is_rejected(tmp_path, monkeypatch):
    model = compile_spec(SPECS["two_tower"])
    real = ex.load
    monkeypatch.setattr(ex, "load", lambda *a: lambda *xs: tuple(y + 1 for y in real(*a)(*xs)))
    with pytest.raises(ex.ExportError, match="torchscript export of 'two_tower' differs from the eager model"):
        ex.export(model, tmp_path, ["torchscript"])
    assert model.training  # the model's mode is restored


def test_unknown_format(tmp_path):
    with pytest.raises(ex.ExportError, match="unknown export format 'tflite'"):
        ex.export(compile_spec(SPECS["two_tower"]), tmp_path, ["tflite"])


def test_onnx_inputs_may_be_named_like_ops(tmp_path):
    """The ONNX exporter names internal values after ops (`cat`, `linear`); inputs named so still export."""
    model = compile_spec("archspec: 1\nname: c\ninputs:\n  cat: {type: numeric, columns: [a, b]}\n"
                         "  linear: {type: numeric, columns: [c]}\nfusions:\n  f: {type: early, inputs: [cat, linear], "
                         "layers: [4]}\nheads:\n  y: {type: regression, from: f}\n")
    result = ex.export(model, tmp_path, ["onnx"])
    model.eval()
    batch = model.example_batch(3, seed=2)
    (got,) = ex.load(tmp_path / result.manifest["files"]["onnx"])(batch["cat"], batch["linear"])
    with torch.no_grad():
        torch.testing.assert_close(got, model(batch)["y"], **TOL)
