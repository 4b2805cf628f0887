"""The contrastive (in-batch softmax) loss: logQ correction, accidental-hit masking by item identity,
random catalogue negatives and a learned temperature, each against a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from archspec.build import compile_loss, compile_spec  # noqa: E402
from archspec.nn.heads import Similarity  # noqa: E402
from archspec.nn.losses import Candidates, build_contrastive  # noqa: E402
from archspec.spec.losses import ContrastiveLossConfig  # noqa: E402

SPEC = """\
archspec: 1
name: tiny_cl
inputs:
  user: {{type: numeric, columns: [u1, u2]}}
  item_id: {{type: categorical, column: item, max_categories: 20}}
encoders:
  user_tower: {{type: mlp, input: user, layers: [4]}}
  item_tower: {{type: embedding, input: item_id, dim: 4}}
heads:
  match: {{type: similarity, query: user_tower, candidate: item_tower, metric: cosine, loss: {loss}}}
training: {{batch_size: 8, epochs: 1, validation_split: 0.25}}
"""


def _loss(**fields):
    cfg = ContrastiveLossConfig(type="contrastive", **fields)
    sim = Similarity("dot", None, False)
    return build_contrastive(cfg, False, {"name": "m", "module": sim}), sim


def _outputs():
    g = torch.Generator().manual_seed(0)
    q, c = torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g)
    c[2] = c[0]  # rows 0 and 2 hold the same item
    return {"m": None, "m.query": q, "m.candidate": c}, q, c


def _table(counts):
    counts = torch.tensor(counts, dtype=torch.float64)
    return Candidates(["x"], {"x": torch.arange(len(counts))}, counts, {})


def test_logq_correction_subtracts_the_log_of_expected_occurrences():
    loss, _ = _loss(logq_correction=True)
    loss.state["candidates"] = _table([3.0, 1.0])  # item 0 is three times as frequent as item 1
    out, q, c = _outputs()
    ids = torch.tensor([0, 1, 0])
    logits = q @ c.T
    logits[0, 2] = logits[2, 0] = torch.finfo(logits.dtype).min  # accidental hits, masked by identity
    log_q = torch.log(torch.tensor([3 / 4, 1 / 4, 3 / 4])) + math.log(3)  # B * p(item)
    want = F.cross_entropy(logits - log_q.unsqueeze(0), torch.arange(3))
    torch.testing.assert_close(loss(None, ids, out), want)
    # the sign: a popular item's logit goes down as a negative, so the corrected loss of a row whose
    # negatives are popular is lower than without the correction
    plain, _ = _loss()
    assert float(loss(None, ids, out)) != pytest.approx(float(plain(None, ids, out)))


def test_accidental_hits_are_masked_by_identity_or_left_in():
    out, q, c = _outputs()
    ids = torch.tensor([0, 1, 0])
    masked, _ = _loss()
    logits = q @ c.T
    logits[0, 2] = logits[2, 0] = torch.finfo(logits.dtype).min
    torch.testing.assert_close(masked(None, ids, out), F.cross_entropy(logits, torch.arange(3)))
    torch.testing.assert_close(masked(None, None, out), F.cross_entropy(logits, torch.arange(3)))  # equal embeddings
    unmasked, _ = _loss(mask_accidental_hits=False)
    torch.testing.assert_close(unmasked(None, ids, out), F.cross_entropy(q @ c.T, torch.arange(3)))


def test_fixed_and_learned_temperature():
    out, q, c = _outputs()
    fixed, _ = _loss(temperature=0.5, mask_accidental_hits=False)
    torch.testing.assert_close(fixed(None, None, out), F.cross_entropy(q @ c.T / 0.5, torch.arange(3)))
    model = compile_spec(SPEC.format(loss="{type: contrastive, temperature: 0.1, learn_temperature: true}"))
    param = model.heads["match"].loss_log_scale
    assert any(p is param for p in model.parameters()) and float(param.detach()) == pytest.approx(math.log(10))
    batch = model.example_batch(4)
    total, _ = compile_loss(model)(model(batch), {}, batch)
    total.backward()
    assert param.grad is not None and float(param.grad) != 0.0
    with torch.no_grad():  # the score (and so every ranking and export) does not use it
        before = model(batch)["match"]
        param.fill_(3.0)
        torch.testing.assert_close(model(batch)["match"], before)


def _frame(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"u1": rng.normal(size=n), "u2": rng.normal(size=n), "item": rng.integers(0, 6, n)})


def test_random_negatives_come_from_the_training_candidates():
    from archspec.data import Preprocessor

    spec = SPEC.format(loss="{type: contrastive, random_negatives: 5, logq_correction: true}")
    model = compile_spec(spec)
    pre = Preprocessor.fit(model.checked, _frame())
    x, _ = pre.transform(_frame(), targets=False)
    loss_fn = compile_loss(model)
    assert loss_fn.needs_fit
    loss_fn.fit(x)
    table = loss_fn.terms[0][2].state["candidates"]
    assert len(table.counts) == len(set(_frame()["item"])) and float(table.counts.sum()) == 24
    batch = {k: v[:8] for k, v in x.items()}
    model.train()
    torch.manual_seed(0)
    with_neg, _ = loss_fn(model(batch), {}, batch)
    with_neg.backward()
    assert model.encoders["item_tower"].embedding.weight.grad is not None
    model.eval()  # no random negatives outside training: evaluation losses are comparable
    plain, _ = loss_fn(model(batch), {}, batch)
    assert float(with_neg.detach()) != pytest.approx(float(plain.detach()))
    # a catalogue of one item: every draw is the row's own positive, masked away
    one = pd.DataFrame({"u1": [0.1, 0.2], "u2": [0.3, 0.4], "item": [3, 3]})
    x1, _ = pre.transform(one, targets=False)
    loss_fn.fit(x1)
    model.train()
    masked, _ = loss_fn(model(x1), {}, x1)
    model.eval()
    in_batch, _ = loss_fn(model(x1), {}, x1)
    torch.testing.assert_close(masked, in_batch)


def test_a_spec_with_every_option_trains(tmp_path):
    from archspec.train import fit

    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.format(loss="{type: contrastive, logq_correction: true, random_negatives: 4, "
                                     "temperature: 0.1, learn_temperature: true, symmetric: true}"))
    _frame(40).to_csv(tmp_path / "train.csv", index=False)
    result = fit(spec, data=str(tmp_path / "train.csv"), out=str(tmp_path / "run"), max_steps=3, log=lambda *a: None)
    assert result.steps == 3
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert lines and all(math.isfinite(v) for v in pd.read_json(tmp_path / "run" / "metrics.jsonl", lines=True)
                         .select_dtypes("number").iloc[-1])


def test_both_temperatures_warn():
    from archspec.pipeline import check_text

    checked = check_text(SPEC.format(loss="{type: contrastive, temperature: 0.1}").replace(
        "metric: cosine,", "metric: cosine, temperature: 0.05,"))
    assert [d.code for d in checked.warnings] == ["W-SIM-TEMPERATURE"]
