"""The compiled seed architectures compute exactly what a hand-written PyTorch model computes.

For each seed architecture, ``tests/parity_specs/<arch>.yaml`` mirrors the seed's Keras code and
``tests/handwritten.py`` holds a hand-written twin. With the compiled model's weights copied into
the twin through an explicit state-dict map, the two give bit-identical outputs, losses and
gradients, and stay identical through optimizer steps. Where the seed is dense-only, parameter
counts are also checked against the Keras layer formulas worked out by hand (Dense: in*out + out).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import yaml

import handwritten as hw
from archspec.build import compile_loss, compile_spec
from archspec.pipeline import check_file

from conftest import ROOT

PARITY = ROOT / "tests" / "parity_specs"
ARCHS = list(hw.TWINS)
SMALL = ["two_tower", "early_fusion", "late_fusion", "hybrid_fusion"]  # cheap enough to train a few steps
BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512)
BERT_MINI = dict(vocab_size=30522, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                 intermediate_size=1024, max_position_embeddings=512)
TF_BERT_BASE_PARAMS = 109_482_240  # TFBertModel("bert-base-uncased").count_params(), pooler included


def dense(n_in: int, n_out: int) -> int:
    """Parameters of a Keras ``Dense(n_out)`` on ``n_in`` features."""
    return n_in * n_out + n_out


def literal_twin(arch: str):
    """The twin built from the seed's sizes written out here, not read from the spec."""
    from transformers import BertConfig

    return {
        "multitask_classifier": lambda: hw.MultiTaskClassifier(BertConfig(**BERT_BASE), 3, 5, 10),
        "two_tower": lambda: hw.TwoTower(num_user_features=20, num_item_features=30),
        "early_fusion": lambda: hw.EarlyFusion(BertConfig(**BERT_MINI), "resnet18", 3),
        "late_fusion": lambda: hw.LateFusion(BertConfig(**BERT_MINI), n_tabular=5, n_classes=3),
        "hybrid_fusion": lambda: hw.HybridFusion((16, 32), audio_width=128, vocab=4000, n_classes=4),
        "multilabel_early_fusion": lambda: hw.MultiLabelEarlyFusion(BertConfig(**BERT_BASE), "resnet50", 10, 6),
    }[arch]()


_PAIRS: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _free_models():
    yield
    _PAIRS.clear()


def pair(arch: str):
    """(compiled model, twin with the compiled weights, constants the twin hard-codes), built once."""
    if arch not in _PAIRS:
        model = compile_spec(PARITY / f"{arch}.yaml")
        twin = literal_twin(arch)
        constants = hw.copy_weights(model, twin)
        _PAIRS[arch] = (model, twin, constants)
    return _PAIRS[arch]


def batch_for(model, arch: str, n: int = 3, seed: int = 1, image_size: int | None = None) -> dict:
    """A small batch: short token sequences (some padded), images of the declared size (or smaller)."""
    g = torch.Generator().manual_seed(seed)
    b = model.example_batch(n, seed=seed)
    for key, shape in model.inputs.items():
        if shape.kind == "image" and image_size:
            b[key] = torch.rand(n, shape.dims[0], image_size, image_size, generator=g)
    for key in [k for k in b if k + ".mask" in b]:
        ids = torch.randint(1, 1000, (n, 16), generator=g)
        mask = torch.ones(n, 16, dtype=torch.long)
        mask[0, 10:] = 0  # padding on the first row
        ids[mask == 0] = 0
        b[key], b[key + ".mask"] = ids, mask
    return b


def targets_for(model, n: int = 3, seed: int = 2) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in model.predictions:
        shape = model.shapes[name]
        kind = model.node_configs[name]
        if shape.kind == "score" or getattr(kind, "type", "") == "multilabel":
            out[name] = torch.randint(0, 2, (n, *shape.dims), generator=g).float()
        else:
            out[name] = torch.randint(0, shape.dims[0], (n,), generator=g)
    return out


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------- every architecture
@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_counts_equal(arch):
    model, twin, _ = pair(arch)
    assert n_params(model) == n_params(twin)
    assert len(list(model.parameters())) == len(list(twin.parameters()))


@pytest.mark.parametrize("arch", ARCHS)
def test_state_dict_map_is_a_bijection(arch):
    model, twin, constants = pair(arch)
    mapped, consts = hw.map_state_dict(model.state_dict(), twin.state_map())
    assert sorted(mapped) == sorted(twin.state_dict())
    assert sorted(consts) == sorted(twin.CONSTANTS)
    for key, value in twin.CONSTANTS.items():
        torch.testing.assert_close(consts[key], torch.tensor(value))


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_and_loss_identical(arch):
    model, twin, _ = pair(arch)
    model.eval(), twin.eval()
    b, y = batch_for(model, arch), targets_for(model)
    with torch.no_grad():
        out = model(b)
        mine = twin(*hw.twin_args(b, twin))
        total, per_head = compile_loss(model)(out, y)
        expected = twin.loss(mine, y)
    assert sorted(n for n in out if "." not in n) == sorted(twin.OUTPUTS)
    for name, a, e in zip(twin.OUTPUTS, hw.twin_outputs(out, twin), mine):
        assert a.shape == e.shape, name
        assert torch.equal(a, e), f"{name}: max |diff| {(a - e).abs().max().item():.3g}"
    assert torch.equal(total, expected), (total.item(), expected.item())
    assert math.isfinite(total.item())


@pytest.mark.parametrize("arch", ARCHS)
def test_gradients_identical(arch):
    """Train mode (dropout and batch statistics on), same seed: same loss, same gradients."""
    model, twin, _ = pair(arch)
    model.train(), twin.train()
    b, y = batch_for(model, arch, seed=3, image_size=64), targets_for(model, seed=4)
    model.zero_grad(), twin.zero_grad()
    torch.manual_seed(0)
    total, _ = compile_loss(model)(model(b), y)
    total.backward()
    torch.manual_seed(0)
    expected = twin.loss(twin(*hw.twin_args(b, twin)), y)
    expected.backward()
    assert torch.equal(total, expected), (total.item(), expected.item())
    grads = {k: p.grad for k, p in model.named_parameters()}
    mapped, _ = hw.map_state_dict(grads, twin.state_map())
    twin_params = dict(twin.named_parameters())
    for key, g in mapped.items():
        mine = twin_params[key].grad
        if g is None or mine is None:
            assert g is None and mine is None, key
            continue
        torch.testing.assert_close(g, mine, rtol=1e-5, atol=1e-7, msg=key)
    model.zero_grad(set_to_none=True), twin.zero_grad(set_to_none=True)


@pytest.mark.parametrize("arch", SMALL)
def test_identical_after_adam_steps(arch):
    """Three Adam steps (Keras defaults: lr 1e-3, eps 1e-7) on both: weights and outputs still equal."""
    model = compile_spec(PARITY / f"{arch}.yaml")  # fresh copies: the shared pair stays as built
    twin = literal_twin(arch)
    hw.copy_weights(model, twin)
    opt_a = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3, eps=1e-7)
    opt_b = torch.optim.Adam([p for p in twin.parameters() if p.requires_grad], lr=1e-3, eps=1e-7)
    loss = compile_loss(model)
    model.train(), twin.train()
    for step in range(3):
        b, y = batch_for(model, arch, seed=10 + step, image_size=64), targets_for(model, seed=20 + step)
        torch.manual_seed(step)
        la, _ = loss(model(b), y)
        torch.manual_seed(step)
        lb = twin.loss(twin(*hw.twin_args(b, twin)), y)
        opt_a.zero_grad(), opt_b.zero_grad()
        la.backward(), lb.backward()
        opt_a.step(), opt_b.step()
        torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-6)
    mapped, _ = hw.map_state_dict(model.state_dict(), twin.state_map())
    for key, value in twin.state_dict().items():
        torch.testing.assert_close(mapped[key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_sequential_style_two_tower_twin_is_the_same_model():
    """The benchmark's second two-tower twin (nn.Sequential style) computes the same thing."""
    model, twin, _ = pair("two_tower")
    seq = hw.TwoTowerSequential(20, 30)
    hw.copy_weights(model, seq)
    b = batch_for(model, "two_tower")
    with torch.no_grad():
        assert torch.equal(seq(*hw.twin_args(b, seq))[0], twin(*hw.twin_args(b, twin))[0])
    assert n_params(seq) == n_params(twin)


# --------------------------------------------------------------------------- Keras parameter counts
def test_two_tower_keras_parameter_count():
    model, _, _ = pair("two_tower")
    user = dense(20, 128) + dense(128, 64) + dense(64, 32)  # 2688 + 8256 + 2080
    item = dense(30, 128) + dense(128, 64) + dense(64, 32)  # 3968 + 8256 + 2080
    assert (user, item) == (13_024, 14_304)
    assert model.parameter_counts("user_embedding") == (user, 0)
    assert model.parameter_counts("item_embedding") == (item, 0)
    assert model.parameter_counts("similarity") == (0, 0)  # Keras' Dot layer has no weights
    assert n_params(model) == 27_328


def test_multitask_keras_parameter_count():
    model, _, _ = pair("multitask_classifier")
    heads = dense(768, 3) + dense(768, 5) + dense(768, 10)  # 2307 + 3845 + 7690
    assert model.parameter_counts("bert_model") == (TF_BERT_BASE_PARAMS, 0)
    assert [model.parameter_counts(h)[0] for h in ("task1_output", "task2_output", "task3_output")] == \
        [2307, 3845, 7690]
    assert n_params(model) == TF_BERT_BASE_PARAMS + heads == 109_496_082


def test_multilabel_keras_parameter_count():
    """The dense part by hand; BERT equals TF BERT. torchvision's ResNet-50 has no conv biases,
    so it has 79,680 parameters fewer than Keras' ResNet50(include_top=False) (23,587,712)."""
    model, _, _ = pair("multilabel_early_fusion")
    tabular = dense(10, 64)  # 704
    fused = dense(2048 + 768 + 64, 128)  # 368,768
    out = dense(128, 6)  # 774
    counts = {n: model.parameter_counts(n)[0] for n in
              ("image_encoder", "bert_model", "tabular_features", "combined_features", "multi_label_output")}
    assert counts["tabular_features"] == tabular == 704
    assert counts["combined_features"] == fused == 368_768
    assert counts["multi_label_output"] == out == 774
    assert counts["bert_model"] == TF_BERT_BASE_PARAMS
    assert counts["image_encoder"] == 23_508_032 == 23_587_712 - 79_680
    assert n_params(model) == sum(counts.values())


# --------------------------------------------------------------------------- Keras loss semantics
def keras_categorical_crossentropy(probs, onehot):
    p = probs / probs.sum(-1, keepdim=True)
    return -(onehot * torch.log(p.clamp(1e-7, 1 - 1e-7))).sum(-1).mean()


def keras_binary_crossentropy(probs, y):
    p = probs.clamp(1e-7, 1 - 1e-7)
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean(-1).mean()


def test_multitask_loss_is_keras_weighted_loss():
    """Keras: softmax/sigmoid outputs, categorical/binary cross-entropy, loss_weights 1.0/0.5/0.8."""
    model, _, _ = pair("multitask_classifier")
    model.eval()
    b, y = batch_for(model, "multitask_classifier"), targets_for(model)
    with torch.no_grad():
        out = model(b)
        total, per_head = compile_loss(model)(out, y)
    keras = {
        "task1_output": keras_categorical_crossentropy(torch.softmax(out["task1_output"], -1),
                                                       F.one_hot(y["task1_output"], 3).float()),
        "task2_output": keras_categorical_crossentropy(torch.softmax(out["task2_output"], -1),
                                                       F.one_hot(y["task2_output"], 5).float()),
        "task3_output": keras_binary_crossentropy(torch.sigmoid(out["task3_output"]), y["task3_output"]),
    }
    for name, value in keras.items():
        torch.testing.assert_close(per_head[name], value, rtol=1e-5, atol=1e-6)
    weights = {"task1_output": 1.0, "task2_output": 0.5, "task3_output": 0.8}
    assert compile_loss(model).weights == weights
    torch.testing.assert_close(total, sum(w * keras[n] for n, w in weights.items()), rtol=1e-5, atol=1e-6)


def test_multilabel_loss_is_keras_binary_crossentropy():
    model, _, _ = pair("multilabel_early_fusion")
    model.eval()
    b, y = batch_for(model, "multilabel_early_fusion"), targets_for(model)
    with torch.no_grad():
        out = model(b)
        total, _ = compile_loss(model)(out, y)
    probs = torch.sigmoid(out["multi_label_output"])
    torch.testing.assert_close(total, keras_binary_crossentropy(probs, y["multi_label_output"]),
                               rtol=1e-5, atol=1e-6)


def test_late_fusion_is_the_seed_weighted_average():
    model, _, _ = pair("late_fusion")
    model.eval()
    with torch.no_grad():
        out = model(batch_for(model, "late_fusion"))
    text, tab = torch.softmax(out["text_pred"], -1), torch.softmax(out["tabular_pred"], -1)
    torch.testing.assert_close(out["final_pred"], 0.6 * text + 0.4 * tab, rtol=0, atol=1e-7)
    torch.testing.assert_close(out["final_pred"].sum(-1), torch.ones(3))


def test_two_tower_keras_dot_normalize():
    """Keras ``Dot(axes=1, normalize=True)``: l2-normalise both embeddings, then the dot product."""
    model, _, _ = pair("two_tower")
    model.eval()
    with torch.no_grad():
        out = model(batch_for(model, "two_tower"))
    u, i = out["similarity.query"], out["similarity.candidate"]

    def l2(x):  # tf.math.l2_normalize
        return x * torch.rsqrt((x * x).sum(-1, keepdim=True).clamp_min(1e-12))

    torch.testing.assert_close(out["similarity"], (l2(u) * l2(i)).sum(-1), rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- the seed's raw cosine
def test_two_tower_raw_cosine_warns_and_builds():
    r = check_file(PARITY / "two_tower.yaml")
    assert r.ok() and r.spec is not None
    warnings = [d for d in r.diagnostics if d.severity == "warning"]
    assert [(d.code, d.path) for d in warnings] == [("W-SIM-BCE", ("heads", "similarity", "metric"))]
    assert "0.73" in warnings[0].message
    assert warnings[0].line == 28
    model, _, _ = pair("two_tower")
    assert model(model.example_batch(2))["similarity"].shape == (2,)


def test_two_tower_keras_loss_differs():
    """What the warning is about. Keras' ``binary_crossentropy`` reads the cosine as a probability
    (clipped to [1e-7, 1 - 1e-7]); archspec reads every score as a logit, so with ReLU towers
    (cosine in [0, 1]) the compiled model's probability sigmoid(cosine) is stuck in [0.5, 0.73]."""
    model, _, _ = pair("two_tower")
    model.eval()
    b, y = batch_for(model, "two_tower"), targets_for(model)
    with torch.no_grad():
        out = model(b)
        total, _ = compile_loss(model)(out, y)
    cos = out["similarity"]
    assert bool(((cos >= 0) & (cos <= 1 + 1e-6)).all())
    torch.testing.assert_close(total, F.binary_cross_entropy_with_logits(cos, y["similarity"]))
    p = torch.sigmoid(cos)
    assert bool(((p >= 0.5) & (p <= 1 / (1 + math.exp(-1)) + 1e-6)).all())
    keras = keras_binary_crossentropy(cos.unsqueeze(-1), y["similarity"].unsqueeze(-1))
    assert not torch.allclose(total, keras)


def test_parity_specs_mirror_the_seed_names():
    """Node names are the Keras layer/input names, so a state dict reads like the seed's model."""
    spec = yaml.safe_load((PARITY / "multitask_classifier.yaml").read_text())
    assert list(spec["heads"]) == ["task1_output", "task2_output", "task3_output"]
    spec = yaml.safe_load((PARITY / "multilabel_early_fusion.yaml").read_text())
    assert list(spec["inputs"]) == ["image_input", "text_input", "tabular_input"]
    assert list(spec["heads"]) == ["multi_label_output"]
    for arch in ARCHS:
        r = check_file(PARITY / f"{arch}.yaml")
        assert r.ok(), [d.render() for d in r.errors]
        assert [d.code for d in r.warnings] == (["W-SIM-BCE"] if arch == "two_tower" else [])
