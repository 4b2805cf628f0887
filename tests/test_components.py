"""Every registered component builds, and its module outputs exactly the shape its config declares.

Walks the encoder, fusion, head and loss registries (timm's registry-parametrized tests): every
config has a builder, every type has at least one case below (so a new component cannot ship
untested), and for each case the config's ``infer`` and the built module agree on a batch of 2,
in eval and in train mode.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from archspec.build import _same
from archspec.errors import ERROR
from archspec.nn.heads import Similarity
import archspec.data.text  # noqa: F401  (registers the tokenizer builders)
import archspec.optim  # noqa: F401  (registers the optimizer and schedule builders)
from archspec.registry import REGISTRIES
from archspec.shapes import AUDIO, FEATURES, IMAGE, INDEX, LOGITS, PROBS, SCORE, SEQUENCE, TOKENS, Shape
from archspec.spec import node_adapter
from archspec.spec.backbones import BACKBONE_WIDTHS, FIXED_SIZE

KINDS = ("encoder", "fusion", "head", "loss", "optimizer", "schedule", "tokenizer")
SECTION = {"encoder": "encoders", "fusion": "fusions", "head": "heads"}
B = 2
VOCAB = 50
CARDINALITY = 11


class CheckCtx:
    """What ``infer`` may use: a report sink."""

    base_dir = None

    def __init__(self):
        self.diagnostics = []

    def report(self, code, path, message, hint="", severity=ERROR):
        self.diagnostics.append((severity, code, message, hint))


class BuildCtx:
    """What builders may ask (see ``archspec.build.BuildContext``), for a made-up graph."""

    def __init__(self, nodes=None):
        self.nodes = nodes or {}
        self.base_dir = Path.cwd()

    def width(self, shape):
        return shape.width

    def cardinality(self, name):
        return CARDINALITY

    def vocab_size(self, name):
        return VOCAB

    def node(self, name):
        return self.nodes[name]

    def prediction_kind(self, name):
        return self.nodes[name].kind

    def prediction_threshold(self, name):
        return self.nodes[name].decision_threshold

    def resolve_path(self, p):
        return Path(p)


def example(shape: Shape, g: torch.Generator) -> list[torch.Tensor]:
    """Batch-of-2 tensors for one input edge (token ids come with their mask)."""
    dims = (B, *shape.dims)
    if shape.kind == TOKENS:
        mask = torch.ones(dims, dtype=torch.long)
        mask[0, -2:] = 0
        return [torch.randint(1, VOCAB, dims, generator=g), mask]
    if shape.kind == INDEX:
        return [torch.randint(0, CARDINALITY, dims, generator=g)]
    if shape.kind == PROBS:
        return [torch.softmax(torch.randn(dims, generator=g), -1)]
    if shape.kind == SEQUENCE:  # vectors per position, with a padding mask
        mask = torch.ones(dims[:2], dtype=torch.long)
        mask[0, -2:] = 0
        return [torch.randn(dims, generator=g), mask]
    if shape.kind == IMAGE:
        return [torch.rand(dims, generator=g)]
    return [torch.randn(dims, generator=g)]


TINY_BERT = {"model_type": "bert", "vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 1,
             "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 16}
F5, F3 = Shape(FEATURES, (5,)), Shape(FEATURES, (3,))
T8 = Shape(TOKENS, (8,), "int64")
S6x4, S5x6 = Shape(SEQUENCE, (6, 4)), Shape(SEQUENCE, (5, 6))


def member(kind: str, name: str, **extra):
    """A head config, as a late fusion's member."""
    base = {"multiclass": {"classes": 4}, "multilabel": {"labels": 4}, "binary": {}}[kind]
    return node_adapter("heads").validate_python({"type": kind, "from": "x", **base, **extra})


def late_case(combine: str, kind: str, **extra):
    shape = Shape(LOGITS, () if kind == "binary" else (4,))
    cfg = {"type": "late", "inputs": ["a", "b"], "combine": combine, **extra}
    if combine == "learned":
        cfg["loss"] = {"type": "nll" if kind == "multiclass" else "binary_cross_entropy"}
    nodes = {"a": member(kind, "a"), "b": member(kind, "b")}
    return (cfg, [shape, shape], nodes)


# (config, input shapes, nodes the build context knows) per case, keyed "kind/type/variant"
CASES = {
    # encoders
    "encoder/mlp/basic": ({"type": "mlp", "input": "x", "layers": [8, 4]}, [F5], None),
    "encoder/mlp/norm-dropout-linear-last": ({"type": "mlp", "input": "x", "layers": [8, 6], "norm": "batch_norm",
                                              "dropout": 0.1, "activate_last": False}, [F5], None),
    "encoder/mlp/layer-norm-gelu": ({"type": "mlp", "input": "x", "layers": [7], "norm": "layer_norm",
                                     "activation": "gelu"}, [F5], None),
    "encoder/identity/basic": ({"type": "identity", "input": "x"}, [F5], None),
    "encoder/embedding/basic": ({"type": "embedding", "input": "x", "dim": 6}, [Shape(INDEX, (), "int64")], None),
    "encoder/embedding_bag/mean": ({"type": "embedding_bag", "input": "x", "dim": 6}, [T8], None),
    "encoder/embedding_bag/max": ({"type": "embedding_bag", "input": "x", "dim": 6, "pooling": "max"}, [T8], None),
    "encoder/embedding_bag/sum-vocab": ({"type": "embedding_bag", "input": "x", "dim": 6, "pooling": "sum",
                                         "vocab_size": 70}, [T8], None),
    "encoder/embedding_bag/sequence": ({"type": "embedding_bag", "input": "x", "dim": 6, "pooling": "none"}, [T8], None),
    "encoder/cnn/patches": ({"type": "cnn", "input": "x", "channels": [4, 8, 6], "global_pool": "none"},
                            [Shape(IMAGE, (3, 17, 12))], None),
    "encoder/cnn/patches-even-kernel": ({"type": "cnn", "input": "x", "channels": [4, 6], "kernel_size": 4,
                                         "global_pool": "none"}, [Shape(IMAGE, (1, 9, 10))], None),
    "encoder/cnn/basic": ({"type": "cnn", "input": "x", "channels": [4, 8]}, [Shape(IMAGE, (3, 16, 16))], None),
    "encoder/cnn/gray-maxpool-nonorm": ({"type": "cnn", "input": "x", "channels": [4, 4, 8], "kernel_size": 5,
                                         "norm": "none", "global_pool": "max"}, [Shape(IMAGE, (1, 12, 20))], None),
    **{f"encoder/transformer/bert-{p}": ({"type": "transformer", "input": "x", "config": TINY_BERT, "pooling": p},
                                         [T8], None) for p in ("cls", "mean", "max", "pooler", "none")},
    "encoder/transformer/distilbert": ({"type": "transformer", "input": "x", "pooling": "mean", "config": {
        "model_type": "distilbert", "vocab_size": VOCAB, "dim": 32, "n_layers": 1, "n_heads": 2,
        "hidden_dim": 64}}, [T8], None),
    "encoder/transformer/t5-encoder": ({"type": "transformer", "input": "x", "pooling": "mean", "config": {
        "model_type": "t5", "vocab_size": VOCAB, "d_model": 32, "num_layers": 1, "num_heads": 2, "d_ff": 64,
        "d_kv": 16}}, [T8], None),
    "encoder/log_mel/basic": ({"type": "log_mel", "input": "x", "n_mels": 8, "n_fft": 64, "hop_length": 32},
                              [Shape(AUDIO, (400,))],
                              {"x": node_adapter("inputs").validate_python({"type": "audio", "column": "f",
                                                                            "sample_rate": 8000, "duration": 0.05})}),
    # fusions
    "fusion/early/concat": ({"type": "early", "inputs": ["a", "b"]}, [F5, F3], None),
    "fusion/early/project-layernorm-layers": ({"type": "early", "inputs": ["a", "b"], "project": 4,
                                               "branch_norm": "layer_norm", "layers": [6], "dropout": 0.2},
                                              [F5, F3], None),
    "fusion/early/project-dict-batchnorm": ({"type": "early", "inputs": ["a", "b"], "project": {"a": 2},
                                             "branch_norm": "batch_norm"}, [F5, F3], None),
    "fusion/early/l2-three-branches": ({"type": "early", "inputs": ["a", "b", "c"], "branch_norm": "l2",
                                        "layers": [8, 4], "norm": "batch_norm"}, [F5, F3, F3], None),
    **{f"fusion/late/{c}-{k}": late_case(c, k, **({"weights": [0.7, 0.3]}
                                                  if c in ("weighted_average", "logit_average") else {}))
       for c in ("weighted_average", "logit_average", "soft_vote", "hard_vote", "learned")
       for k in ("multiclass", "multilabel", "binary")},
    "fusion/late/of-probabilities": ({"type": "late", "inputs": ["a", "b"]},
                                     [Shape(PROBS, (4,)), Shape(LOGITS, (4,))],
                                     {"a": member("multiclass", "a"), "b": member("multiclass", "b")}),
    "fusion/mmoe/basic": ({"type": "mmoe", "inputs": ["a"], "tasks": ["t1", "t2"], "experts": 3,
                           "expert_layers": [6]}, [F5], None),
    "fusion/mmoe/ple-two-levels": ({"type": "mmoe", "inputs": ["a", "b"], "tasks": ["t1", "t2", "t3"], "experts": 2,
                                    "task_experts": 1, "levels": 2, "expert_layers": [8, 4], "dropout": 0.1,
                                    "activation": "gelu"}, [F5, F3], None),
    "fusion/cross_attention/basic": ({"type": "cross_attention", "query": "q", "context": "c", "heads": 2},
                                     [S6x4, S5x6], None),
    "fusion/cross_attention/bidirectional-dim-ff": ({"type": "cross_attention", "query": "q", "context": "c",
                                                     "heads": 2, "layers": 2, "dim": 8, "feedforward": 16,
                                                     "bidirectional": True, "pooling": "max", "dropout": 0.1},
                                                    [S6x4, S5x6], None),
    "fusion/cross_attention/first": ({"type": "cross_attention", "query": "q", "context": "c", "heads": 3,
                                      "pooling": "first", "bidirectional": True}, [Shape(SEQUENCE, (4, 6)), S5x6], None),
    # heads
    "head/multiclass/basic": ({"type": "multiclass", "from": "x", "classes": 3}, [F5], None),
    "head/multiclass/hidden-named": ({"type": "multiclass", "from": "x", "classes": ["a", "b"], "layers": [8],
                                      "dropout": 0.1, "norm": "layer_norm"}, [F5], None),
    "head/multilabel/basic": ({"type": "multilabel", "from": "x", "labels": 4}, [F5], None),
    "head/binary/basic": ({"type": "binary", "from": "x"}, [F5], None),
    "head/binary/hidden": ({"type": "binary", "from": "x", "layers": [4]}, [F5], None),
    "head/regression/basic": ({"type": "regression", "from": "x"}, [F5], None),
    "head/regression/outputs": ({"type": "regression", "from": "x", "outputs": 3, "layers": [6]}, [F5], None),
    **{f"head/similarity/{m}": ({"type": "similarity", "query": "q", "candidate": "c", "metric": m,
                                 "temperature": 0.1}, [F5, F5], None) for m in ("dot", "cosine", "euclidean")},
    "head/similarity/learn-scale": ({"type": "similarity", "query": "q", "candidate": "c", "metric": "cosine",
                                     "learn_scale": True}, [F5, F5], None),
}

# torchvision backbones: a representative row of most families in BACKBONE_WIDTHS (every row was
# checked once against torchvision by a one-off script); small images keep it fast
TORCHVISION = {"resnet18": 64, "mobilenet_v3_small": 64, "efficientnet_b0": 64, "densenet121": 64,
               "convnext_tiny": 64, "squeezenet1_1": 64, "vgg11": 64, "shufflenet_v2_x0_5": 64,
               "regnet_y_400mf": 64, "googlenet": 64, "inception_v3": 96,
               "vit_b_16": 224, "swin_t": 64, "maxvit_t": 224}
for _name, _size in TORCHVISION.items():
    CASES[f"encoder/torchvision/{_name}"] = ({"type": "torchvision", "input": "x", "model": _name},
                                             [Shape(IMAGE, (3, _size, _size))], None)


def _case_ids():
    return sorted(CASES)


def test_every_config_has_a_builder():
    for kind in KINDS:
        reg = REGISTRIES[kind]
        assert reg.configs, kind
        assert sorted(reg.configs) == sorted(reg.builders), kind


# Types whose module computes nothing by itself before training or without a trained run, each
# tested end to end in its own file instead: a `gbdt` head's trees are fitted on data
# (tests/test_gbdt.py); a `run` head predicts with another trained run (tests/test_members.py).
TESTED_ELSEWHERE = {"head": {"gbdt", "run"}}


@pytest.mark.parametrize("kind", ("encoder", "fusion", "head"))
def test_every_type_has_a_case(kind):
    covered = {cid.split("/")[1] for cid in CASES if cid.startswith(kind + "/")}
    assert sorted(REGISTRIES[kind].configs) == sorted(covered | TESTED_ELSEWHERE.get(kind, set()))
    assert not covered & TESTED_ELSEWHERE.get(kind, set())


@pytest.mark.parametrize("case", _case_ids())
def test_component_output_matches_inferred_shape(case):
    kind, type_, _ = case.split("/")
    raw, in_shapes, nodes = CASES[case]
    cfg = node_adapter(SECTION[kind]).validate_python(raw)
    assert cfg.type == type_
    check = CheckCtx()
    inferred = cfg.infer(in_shapes, check)
    assert [d for d in check.diagnostics if d[0] == ERROR] == []
    torch.manual_seed(0)
    module = REGISTRIES[kind].builders[type_](cfg, in_shapes, BuildCtx(nodes))
    g = torch.Generator().manual_seed(0)
    args = [t for s in in_shapes for t in example(s, g)]
    for mode in ("eval", "train"):
        getattr(module, mode)()
        with torch.no_grad():
            out = module(*args)
        assert isinstance(out, torch.Tensor), f"{mode}: {type(out).__name__}"
        assert out.shape[0] == B
        assert _same(tuple(out.shape[1:]), inferred.dims), f"{mode}: {tuple(out.shape)} vs {inferred}"
        assert inferred.known, inferred
        assert out.dtype == torch.float32
        assert bool(torch.isfinite(out).all())
    if type_ == "torchvision":  # the checker's BACKBONE_WIDTHS row is the real feature width
        assert tuple(out.shape) == (B, BACKBONE_WIDTHS[raw["model"]])
        assert FIXED_SIZE.get(raw["model"], in_shapes[0].dims[1]) == in_shapes[0].dims[1]
    if hasattr(cfg, "static_params"):  # the torch-free count (archspec params) equals the module's
        assert cfg.static_params(in_shapes) == sum(p.numel() for p in module.parameters())
    if inferred.kind == PROBS:
        assert bool(((out >= 0) & (out <= 1 + 1e-6)).all())
    if inferred.kind == SCORE and inferred.range is not None and getattr(cfg, "temperature", 1) is None:
        lo, hi = inferred.range
        assert bool(((out >= lo - 1e-6) & (out <= hi + 1e-6)).all())


def test_torchvision_unknown_name_is_a_build_error():
    from archspec.errors import BuildError

    cfg = node_adapter("encoders").validate_python({"type": "torchvision", "input": "x", "model": "resnet19"})
    check = CheckCtx()
    cfg.infer([Shape(IMAGE, (3, 64, 64))], check)
    assert [d[1] for d in check.diagnostics] == ["W-BACKBONE"]
    assert "did you mean 'resnet18'?" in check.diagnostics[0][3]
    with pytest.raises(BuildError, match="no model 'resnet19'"):
        REGISTRIES["encoder"].builders["torchvision"](cfg, [Shape(IMAGE, (3, 64, 64))], BuildCtx())


# --------------------------------------------------------------------------- losses
def _loss_case(loss_type: str):
    """(loss config, on_probs, head, output, target, outputs dict) for one loss type."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, 4, generator=g, requires_grad=True)
    if loss_type == "cross_entropy":
        return {"class_weights": [1.0, 2.0, 1.0, 0.5], "label_smoothing": 0.1}, False, logits, torch.tensor([0, 3])
    if loss_type == "nll":
        return {}, True, torch.softmax(logits, -1), torch.tensor([1, 2])
    if loss_type == "binary_cross_entropy":
        return {"pos_weight": 2.0}, False, logits, torch.tensor([[0, 1, 1, 0], [1, 0, 0, 0]]).float()
    if loss_type in ("mse", "huber"):
        return {}, False, logits, torch.randn(B, 4, generator=g)
    if loss_type == "contrastive":
        return {"symmetric": True}, False, None, None
    raise AssertionError(f"no test case for loss '{loss_type}': add one")


@pytest.mark.parametrize("loss_type", sorted(REGISTRIES["loss"].configs))
def test_loss_builds_and_gives_a_finite_scalar(loss_type):
    extra, on_probs, output, target = _loss_case(loss_type)
    cfg_cls = REGISTRIES["loss"].configs[loss_type]
    cfg = cfg_cls.model_validate({"type": loss_type, **extra})
    sim = Similarity("cosine", 0.1, False)
    head = {"name": "h", "module": sim}
    fn = REGISTRIES["loss"].builders[loss_type](cfg, on_probs, head)
    outputs = {}
    if loss_type == "contrastive":
        q = torch.randn(3, 5, requires_grad=True)
        c = torch.randn(3, 5)
        output = sim(q, c)
        outputs = {"h": output, "h.query": q, "h.candidate": c}
    value = fn(output, target, outputs)
    assert value.shape == ()
    assert bool(torch.isfinite(value))
    value.backward()


def test_binary_cross_entropy_on_probabilities_matches_logits():
    cfg = REGISTRIES["loss"].configs["binary_cross_entropy"].model_validate({"type": "binary_cross_entropy"})
    logits = torch.randn(4, 3)
    y = torch.randint(0, 2, (4, 3)).float()
    on_logits = REGISTRIES["loss"].builders["binary_cross_entropy"](cfg, False, None)(logits, y, {})
    on_probs = REGISTRIES["loss"].builders["binary_cross_entropy"](cfg, True, None)(torch.sigmoid(logits), y, {})
    torch.testing.assert_close(on_logits, on_probs, rtol=1e-5, atol=1e-6)


def test_contrastive_masks_duplicate_candidates():
    """A duplicate of the positive in the batch is not a negative: the loss equals the one without it."""
    cfg = REGISTRIES["loss"].configs["contrastive"].model_validate({"type": "contrastive"})
    sim = Similarity("dot", None, False)
    fn = REGISTRIES["loss"].builders["contrastive"](cfg, False, {"name": "h", "module": sim})
    q = torch.randn(3, 4)
    c = torch.randn(3, 4)
    c_dup = c.clone()
    c_dup[2] = c_dup[0]
    with_dup = fn(None, None, {"h.query": q, "h.candidate": c_dup})
    logits = q @ c_dup.T
    logits[0, 2] = logits[2, 0] = float("-inf")
    expected = torch.nn.functional.cross_entropy(logits, torch.arange(3))
    torch.testing.assert_close(with_dup, expected)


@pytest.mark.parametrize("name", ["inception_v3", "resnet18"])
def test_named_weights_come_from_the_hub_cache(name, tmp_path, monkeypatch):
    """`weights: DEFAULT` loads the file from the torch hub cache (never downloads), and a backbone
    whose named weights carry auxiliary classifiers still gives one tensor in train mode."""
    import torchvision

    from archspec.build import compile_spec

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert torch.hub.get_dir() == str(tmp_path / "hub")
    weights = torchvision.models.get_model_weights(name).DEFAULT
    kwargs = {"aux_logits": True, "init_weights": False} if name == "inception_v3" else {}
    torch.manual_seed(7)
    reference = torchvision.models.get_model(name, weights=None, num_classes=1000, **kwargs)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / Path(weights.url).name)
    model = compile_spec(f"""archspec: 1
name: cached
inputs: {{img: {{type: image, column: p, size: [96, 96]}}}}
encoders: {{enc: {{type: torchvision, input: img, model: {name}, weights: DEFAULT}}}}
heads: {{y: {{type: multiclass, from: enc, classes: 3}}}}
""")
    body = model.encoders["enc"].body.state_dict()
    for key, value in reference.state_dict().items():
        if key in body:
            assert torch.equal(body[key], value), key
    assert not any(k.startswith(("AuxLogits.", "aux1.", "aux2.")) for k in body)
    model.train()
    out = model(model.example_batch(2))["y"]
    assert out.shape == (2, 3)


@pytest.mark.parametrize("name", ["inception_v3", "resnet18"])
def test_a_trained_run_rebuilds_named_weights_without_their_file(name, tmp_path, monkeypatch):
    """Loading a run (`weights_from_run`) builds the architecture the named weights imply — inception's
    input transform included — without reading or downloading the weights file."""
    import torchvision

    from archspec.build import compile_spec

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("ARCHSPEC_OFFLINE", "1")
    spec = f"""archspec: 1
name: cached
inputs: {{img: {{type: image, column: p, size: [96, 96]}}}}
encoders: {{enc: {{type: torchvision, input: img, model: {name}, weights: DEFAULT}}}}
heads: {{y: {{type: multiclass, from: enc, classes: 3}}}}
"""
    model = compile_spec(spec, weights_from_run=tmp_path)
    assert not (tmp_path / "empty").exists()
    body = model.encoders["enc"].body
    if name == "inception_v3":
        assert body.transform_input is True and body.AuxLogits is None
    kwargs = {"aux_logits": True, "init_weights": False} if name == "inception_v3" else {}
    reference = torchvision.models.get_model(name, weights=None, **kwargs)
    assert set(body.state_dict()) == {k for k in reference.state_dict()
                                      if not k.startswith(("fc.", "AuxLogits."))}
