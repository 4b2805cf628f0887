"""MMoE and cross-attention compile to exactly what a hand-written PyTorch model computes.

As in ``tests/test_parity.py``: the compiled model's weights are copied into a hand-written twin
through an explicit state-dict map, then outputs, losses and gradients are compared bit for bit.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archspec.build import compile_loss, compile_spec
from archspec.shapes import SEQUENCE

N_IN, EXPERTS, WIDTH, CLASSES = 6, 3, 8, 4

MMOE_SPEC = f"""\
archspec: 1
name: mmoe_parity
inputs:
  x: {{type: numeric, columns: [a, b, c, d, e, f]}}
fusions:
  moe: {{type: mmoe, inputs: [x], tasks: [kind, score], experts: {EXPERTS}, expert_layers: [{WIDTH}]}}
heads:
  kind: {{type: multiclass, from: moe.kind, classes: {CLASSES}}}
  score: {{type: regression, from: moe.score, loss: {{type: mse, weight: 0.5}}}}
"""


class HandMMoE(nn.Module):
    """MMoE as written from Ma et al. (2018): shared ReLU experts, a softmax(W x) gate and a tower per task."""

    def __init__(self, n_in: int, experts: int, width: int, classes: int):
        super().__init__()
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(n_in, width), nn.ReLU()) for _ in range(experts))
        self.gates = nn.ModuleList(nn.Linear(n_in, experts, bias=False) for _ in range(2))
        self.kind = nn.Linear(width, classes)
        self.score = nn.Linear(width, 1)

    def forward(self, x):  # (B, n_in) -> (B, classes), (B, 1)
        e = torch.stack([expert(x) for expert in self.experts], dim=1)  # (B, E, width)
        mixed = []
        for gate in self.gates:
            g = torch.softmax(gate(x), dim=-1)  # (B, E)
            mixed.append(torch.bmm(g.unsqueeze(1), e).squeeze(1))
        return self.kind(mixed[0]), self.score(mixed[1])

    @staticmethod
    def loss(outputs, targets):
        kind, score = outputs
        return F.cross_entropy(kind, targets["kind"]) + 0.5 * F.mse_loss(score, targets["score"])

    @staticmethod
    def state_map():
        m = [(f"fusions.moe.levels.0.shared.{i}.0.", f"experts.{i}.0.") for i in range(EXPERTS)]
        m += [(f"fusions.moe.levels.0.gates.{k}.", f"gates.{k}.") for k in range(2)]
        return m + [("heads.kind.out.", "kind."), ("heads.score.out.", "score.")]


def _copy(model, twin, state_map) -> None:
    mapped = {}
    for key, value in model.state_dict().items():
        prefix = next(p for p in state_map if key.startswith(p[0]))
        mapped[prefix[1] + key[len(prefix[0]):]] = value
    assert sorted(mapped) == sorted(twin.state_dict())
    twin.load_state_dict(mapped)


def _n(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def mmoe_pair():
    model = compile_spec(MMOE_SPEC)
    twin = HandMMoE(N_IN, EXPERTS, WIDTH, CLASSES)
    _copy(model, twin, [(a, b) for a, b in HandMMoE.state_map()])
    return model, twin


def test_mmoe_parameter_count_matches_the_twin_and_the_formula(mmoe_pair):
    model, twin = mmoe_pair
    assert _n(model) == _n(twin)
    experts = EXPERTS * (N_IN * WIDTH + WIDTH)
    gates = 2 * N_IN * EXPERTS  # softmax(W x): no bias
    heads = WIDTH * CLASSES + CLASSES + WIDTH + 1
    assert _n(model) == experts + gates + heads


def test_mmoe_outputs_losses_and_gradients_are_bit_identical(mmoe_pair):
    model, twin = mmoe_pair
    x = torch.randn(5, N_IN, generator=torch.Generator().manual_seed(3))
    targets = {"kind": torch.tensor([0, 3, 1, 2, 0]), "score": torch.randn(5, 1)}
    out = model({"x": x})
    kind, score = twin(x)
    assert torch.equal(out["kind"], kind) and torch.equal(out["score"], score)
    total, _ = compile_loss(model)(out, targets)
    expected = HandMMoE.loss((kind, score), targets)
    assert torch.equal(total, expected)
    model.zero_grad()
    twin.zero_grad()
    total.backward()
    expected.backward()
    grads = dict(twin.named_parameters())
    for key, p in model.named_parameters():
        a, b = next((a, b) for a, b in HandMMoE.state_map() if key.startswith(a))
        assert torch.equal(p.grad, grads[b + key[len(a):]].grad), key


def test_mmoe_gates_are_a_softmax_over_experts_per_task(mmoe_pair):
    model, _ = mmoe_pair
    x = torch.randn(7, N_IN)
    gates = model.fusions["moe"].gate_weights(x)
    assert len(gates) == 2  # one per task
    for g in gates:
        assert g.shape == (7, EXPERTS)
        assert bool((g >= 0).all())
        torch.testing.assert_close(g.sum(-1), torch.ones(7))
    assert not torch.equal(gates[0], gates[1])  # each task has its own gate


def test_ple_parameter_count_follows_the_paper():
    """CGC/PLE (Tang et al. 2020): per level, shared + per-task experts, a gate per task over its own and
    the shared experts, and (below the top level) a shared gate over every expert."""
    spec = MMOE_SPEC.replace(f"experts: {EXPERTS}, expert_layers: [{WIDTH}]",
                             f"experts: 2, task_experts: 1, levels: 2, expert_layers: [{WIDTH}]")
    model = compile_spec(spec)
    moe = model.fusions["moe"]

    def level(n_in, shared_gate):
        experts = (2 + 2 * 1) * (n_in * WIDTH + WIDTH)
        gates = 2 * n_in * (1 + 2)
        return experts + gates + (n_in * (2 * 1 + 2) if shared_gate else 0)

    assert _n(moe) == level(N_IN, True) + level(WIDTH, False)
    out = model({"x": torch.randn(3, N_IN)})
    assert out["kind"].shape == (3, CLASSES) and out["score"].shape == (3, 1)


# --------------------------------------------------------------------------- cross-attention
DQ, DC, HEADS, VOCAB = 8, 6, 2, 40

XA_SPEC = f"""\
archspec: 1
name: cross_parity
inputs:
  title: {{type: text, column: title, max_length: 7, tokenizer: {{type: wordpiece, vocab_size: {VOCAB}}}}}
  plot: {{type: text, column: plot, max_length: 9, tokenizer: {{type: wordpiece, vocab_size: {VOCAB}}}}}
encoders:
  words: {{type: embedding_bag, input: title, dim: {DQ}, pooling: none}}
  context: {{type: embedding_bag, input: plot, dim: {DC}, pooling: none}}
fusions:
  joint: {{type: cross_attention, query: words, context: context, heads: {HEADS}}}
heads:
  y: {{type: multiclass, from: joint, classes: 3}}
"""


class HandCrossAttention(nn.Module):
    """Title tokens attend to plot tokens: nn.MultiheadAttention, residual + LayerNorm, masked mean, linear."""

    def __init__(self):
        super().__init__()
        self.title = nn.Embedding(VOCAB, DQ, padding_idx=0)
        self.plot = nn.Embedding(VOCAB, DC, padding_idx=0)
        self.attn = nn.MultiheadAttention(DQ, HEADS, kdim=DC, vdim=DC, batch_first=True)
        self.norm = nn.LayerNorm(DQ)
        self.out = nn.Linear(DQ, 3)

    def forward(self, title, title_mask, plot, plot_mask):
        q, c = self.title(title), self.plot(plot)  # (B, T, DQ), (B, S, DC)
        a, _ = self.attn(q, c, c, key_padding_mask=plot_mask == 0, need_weights=False)
        x = self.norm(q + a)
        m = title_mask.unsqueeze(-1).to(x.dtype)
        return self.out((x * m).sum(1) / m.sum(1).clamp_min(1.0))

    STATE_MAP = [("encoders.words.embedding.", "title."), ("encoders.context.embedding.", "plot."),
                 ("fusions.joint.query_blocks.0.attn.", "attn."), ("fusions.joint.query_blocks.0.norm.", "norm."),
                 ("heads.y.out.", "out.")]


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    title, plot = torch.randint(1, VOCAB, (4, 7), generator=g), torch.randint(1, VOCAB, (4, 9), generator=g)
    tm, pm = torch.ones(4, 7, dtype=torch.long), torch.ones(4, 9, dtype=torch.long)
    tm[0, 4:] = 0
    pm[1, 3:] = 0
    pm[2, 8:] = 0
    title[tm == 0] = 0
    plot[pm == 0] = 0
    return {"title": title, "title.mask": tm, "plot": plot, "plot.mask": pm}


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_cross_attention_is_bit_identical_to_a_multihead_attention_twin(mode):
    model = compile_spec(XA_SPEC)
    assert model.shapes["words"].kind == SEQUENCE
    twin = HandCrossAttention()
    _copy(model, twin, HandCrossAttention.STATE_MAP)
    assert _n(model) == _n(twin)
    getattr(model, mode)()
    getattr(twin, mode)()
    b = _batch()
    out = model(b)["y"]
    expected = twin(b["title"], b["title.mask"], b["plot"], b["plot.mask"])
    assert torch.equal(out, expected)
    y = torch.tensor([0, 1, 2, 1])
    F.cross_entropy(out, y).backward()
    F.cross_entropy(expected, y).backward()
    assert torch.equal(model.fusions["joint"].query_blocks[0].attn.k_proj_weight.grad, twin.attn.k_proj_weight.grad)


@pytest.mark.parametrize("variant", ["", "bidirectional: true, layers: 2, feedforward: 12, pooling: max, "])
def test_padded_positions_change_nothing(variant):
    spec = XA_SPEC.replace("heads: 2}", variant + "heads: 2}")
    model = compile_spec(spec).eval()
    b = _batch()
    ref = model(b)["y"]
    noisy = dict(b)
    g = torch.Generator().manual_seed(9)
    for key in ("title", "plot"):  # other token ids (so other vectors) at every padded position
        ids = noisy[key].clone()
        pad = noisy[key + ".mask"] == 0
        ids[pad] = torch.randint(1, VOCAB, (int(pad.sum()),), generator=g)
        noisy[key] = ids
    assert not torch.equal(noisy["plot"], b["plot"])
    assert torch.equal(model(noisy)["y"], ref)
    real = dict(b)  # while a real context position does change the result
    real["plot"] = b["plot"].clone()
    real["plot"][1, 0] = (b["plot"][1, 0] % (VOCAB - 1)) + 1
    assert not torch.equal(model(real)["y"][1], ref[1])


def test_a_context_with_no_real_position_gives_finite_features():
    model = compile_spec(XA_SPEC).eval()
    b = _batch()
    b["plot.mask"][3] = 0
    b["plot"][3] = 0
    out = model(b)["y"]
    assert bool(torch.isfinite(out).all())


def test_cnn_patches_are_the_feature_map_row_by_row():
    spec = XA_SPEC.replace(f"  plot: {{type: text, column: plot, max_length: 9, tokenizer: {{type: wordpiece, "
                           f"vocab_size: {VOCAB}}}}}", "  photo: {type: image, column: p, size: [12, 10], channels: 1}")
    spec = spec.replace(f"context: {{type: embedding_bag, input: plot, dim: {DC}, pooling: none}}",
                        "context: {type: cnn, input: photo, channels: [4, 6], global_pool: none}")
    model = compile_spec(spec).eval()
    assert model.shapes["context"].dims == (6 * 5, 6)
    img = torch.rand(2, 1, 12, 10)
    cnn = model.encoders["context"]
    fmap = cnn.features(img)  # (2, 6, 6, 5)
    patches = cnn(img)
    assert torch.equal(patches[:, 7], fmap[:, :, 1, 2])  # patch 7 = row 1, column 2


def test_the_graph_picture_labels_each_task_edge_and_the_shapes_name_the_task_outputs():
    from archspec.diagram import dot, mermaid
    from archspec.pipeline import check_text

    checked = check_text(MMOE_SPEC)
    assert checked.shapes["moe"].dims == (2, WIDTH) and checked.shapes["moe"].kind == "tasks"
    assert checked.shapes["moe.kind"].dims == (WIDTH,) and checked.shapes["moe.kind"].kind == "features"
    assert checked.graph.sources("kind") == ["moe.kind"]
    text = mermaid(checked)
    assert "n_moe -->|kind| n_kind" in text and "n_moe -->|score| n_score" in text
    assert 'label="score"' in dot(checked)


def test_a_transformer_sequence_attends_to_cnn_patches_with_its_own_mask():
    spec = f"""\
archspec: 1
name: vl
inputs:
  caption: {{type: text, column: c, max_length: 8, tokenizer: {{type: wordpiece, vocab_size: {VOCAB}}}}}
  photo: {{type: image, column: p, size: [8, 8], channels: 1}}
encoders:
  text: {{type: transformer, input: caption, pooling: none, config: {{model_type: bert, vocab_size: {VOCAB},
          hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32,
          max_position_embeddings: 8}}}}
  patches: {{type: cnn, input: photo, channels: [4, 16], global_pool: none}}
fusions:
  joint: {{type: cross_attention, query: patches, context: text, heads: 2}}
heads:
  y: {{type: binary, from: joint}}
"""
    model = compile_spec(spec).eval()
    assert model.shapes["text"].kind == SEQUENCE and model.shapes["text"].dims == (8, 16)
    assert model.shapes["patches"].dims == (16, 16)
    b = model.example_batch(3, seed=2)
    b["caption.mask"] = torch.ones(3, 8, dtype=torch.long)
    b["caption.mask"][1, 5:] = 0
    values = model.run(b, ("joint",))
    assert torch.equal(values["text.mask"], b["caption.mask"])  # the tokens' mask travels with the sequence
    assert values["patches.mask"].shape == (3, 16) and bool(values["patches.mask"].all())
    ref = model(b)["y"]
    noisy = dict(b)
    noisy["caption"] = b["caption"].clone()
    noisy["caption"][1, 5:] = (b["caption"][1, 5:] % (VOCAB - 2)) + 1  # other ids at padded positions
    torch.testing.assert_close(model(noisy)["y"], ref, rtol=0, atol=1e-6)
