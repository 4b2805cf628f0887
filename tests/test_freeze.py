"""`trainable: false` freezes an encoder completely: no gradients, no updates, no BatchNorm drift."""

from __future__ import annotations

import pytest
import torch

from archspec.build import compile_loss, compile_spec

SPEC = """archspec: 1
name: frozen
inputs:
  image: {type: image, column: path, size: [16, 16]}
  tab: {type: numeric, columns: [a, b, c, d]}
  text: {type: text, column: t, max_length: 8, tokenizer: {type: wordpiece, vocab_size: 60}}
encoders:
  image_encoder: {type: cnn, input: image, channels: [4, 8], trainable: false}
  text_encoder:
    type: transformer
    input: text
    trainable: false
    config: {model_type: bert, vocab_size: 60, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2,
             intermediate_size: 32, max_position_embeddings: 8, hidden_dropout_prob: 0.5}
    pooling: mean
  tab_encoder: {type: mlp, input: tab, layers: [8], norm: batch_norm}
fusions:
  both: {type: early, inputs: [image_encoder, text_encoder, tab_encoder], layers: [8], branch_norm: batch_norm}
heads:
  label: {type: multiclass, from: both, classes: 3}
"""
FROZEN = ("image_encoder", "text_encoder")


def targets(n, seed):
    return {"label": torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(seed))}


@pytest.fixture()
def model():
    return compile_spec(SPEC)


def frozen_state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.split(".")[1] in FROZEN}


def test_frozen_parameters_do_not_require_grad(model):
    for name, p in model.named_parameters():
        assert p.requires_grad == (name.split(".")[1] not in FROZEN), name
    assert sorted(model.frozen) == sorted(FROZEN)
    for node in FROZEN:
        trainable, frozen = model.parameter_counts(node)
        assert trainable == 0 and frozen > 0
    assert model.parameter_counts("tab_encoder")[1] == 0


def test_train_mode_keeps_frozen_encoders_in_eval(model):
    model.train()
    for name, module in model.named_modules():
        parts = name.split(".")
        if len(parts) >= 2 and parts[1] in FROZEN:
            assert not module.training, name
        elif name:
            assert module.training, name
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert model.encoders["tab_encoder"].training and not model.encoders["text_encoder"].training


def test_frozen_dropout_is_off_in_train_mode(model):
    """The frozen BERT has dropout 0.5 in its config; in train mode its features are still deterministic."""
    model.train()
    batch = model.example_batch(4, seed=1)
    a, b = model.encode(batch, "text_encoder"), model.encode(batch, "text_encoder")
    assert torch.equal(a, b)


@pytest.mark.parametrize("optimizer", ["adam_weight_decay", "adamw", "sgd_momentum"])
def test_frozen_encoders_unchanged_by_training(model, optimizer):
    """Several optimizer steps over *all* parameters (the common mistake: frozen ones included)."""
    params = list(model.parameters())
    opt = {"adam_weight_decay": lambda: torch.optim.Adam(params, lr=1e-2, weight_decay=0.1),
           "adamw": lambda: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1),
           "sgd_momentum": lambda: torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1)}[optimizer]()
    loss = compile_loss(model)
    before = frozen_state(model)
    trainable_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    bn_before = {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}
    model.train()
    for step in range(4):
        batch = model.example_batch(8, seed=step)
        batch["image"] = batch["image"] * (step + 1) + step  # shifts the batch statistics each step
        total, _ = loss(model(batch), targets(8, step))
        opt.zero_grad(set_to_none=True)
        total.backward()
        for name, p in model.named_parameters():
            if name.split(".")[1] in FROZEN:
                assert p.grad is None, name
        opt.step()
    after = frozen_state(model)
    assert sorted(before) == sorted(after)
    for key in before:
        assert torch.equal(before[key], after[key]), key  # weights, running_mean/var, num_batches_tracked
    assert any("running_mean" in k for k in before)  # the CNN's BatchNorm statistics were checked
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert not torch.equal(trainable_before[name], p.detach()), f"{name} did not train"
    # the trainable BatchNorms did update their statistics
    moved = [k for k, v in model.state_dict().items() if "running_mean" in k and k.split(".")[1] not in FROZEN
             and not torch.equal(bn_before[k], v)]
    assert moved


def test_freezing_one_tower_leaves_the_rest_of_the_graph_training():
    spec = SPEC.replace("trainable: false}", "trainable: true}").replace("    trainable: false\n", "")
    model = compile_spec(spec)
    assert model.frozen == []
    assert all(p.requires_grad for p in model.parameters())
