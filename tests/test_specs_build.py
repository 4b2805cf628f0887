"""Every shipped spec compiles offline, runs forward and backward, and trains every parameter.

The loss is the compiled loss with random targets of the right kind for each prediction. After
one backward pass every trainable parameter has a non-zero gradient, except the documented cases
in ``NO_GRADIENT``; one optimizer step then changes every parameter that had one.
"""

from __future__ import annotations

import math

import pytest
import torch

from archspec.build import compile_loss, compile_spec
from archspec.graph import prediction_kind

from conftest import SPECS

B = 4
# (spec stem, parameter name prefix) -> why it gets no gradient. Nothing is exempt today: every
# shipped spec trains all of its parameters (a late fusion's fixed weights are a buffer, BERT's
# pooler is left out unless `pooling: pooler`, duplicate candidates are masked, not dropped).
NO_GRADIENT: dict[tuple[str, str], str] = {}


def random_targets(model, n: int, seed: int = 0) -> dict:
    """A target of the right kind and shape for every prediction that has a loss on a target."""
    g = torch.Generator().manual_seed(seed)
    graph = model.checked.graph
    out = {}
    for name in model.predictions:
        cfg = model.node_configs[name]
        loss = getattr(cfg, "loss", None)
        if loss is None or loss.type == "contrastive":
            continue
        shape = model.shapes[name]
        kind = prediction_kind(graph, name)
        if kind == "multiclass":
            out[name] = torch.randint(0, shape.dims[0], (n,), generator=g)
        elif kind in ("multilabel", "binary", "similarity"):
            out[name] = torch.randint(0, 2, (n, *shape.dims), generator=g).float()
        elif kind == "regression":
            out[name] = torch.randn(n, *shape.dims, generator=g)
        else:
            raise AssertionError(f"{name}: no target recipe for prediction kind {kind!r}")
    return out


@pytest.fixture(scope="module")
def built():
    cache = {}

    def get(path):
        if path not in cache:
            cache[path] = compile_spec(path)
        return cache[path]

    yield get
    cache.clear()


def test_every_shipped_spec_is_covered():
    assert {p.stem for p in SPECS} >= {"multitask_classifier", "two_tower", "early_fusion", "late_fusion",
                                       "hybrid_fusion", "multilabel_early_fusion"}


def test_spec_builds_runs_and_trains(spec_path, built):
    model = built(spec_path)
    model.train()
    batch = model.example_batch(B, seed=1)
    out = model(batch)
    for name in model.predictions:
        assert tuple(out[name].shape) == (B, *model.shapes[name].dims), name
        assert bool(torch.isfinite(out[name]).all()), name
    loss = compile_loss(model)
    targets = random_targets(model, B)
    total, per_head = loss(out, targets)
    assert total.shape == () and math.isfinite(total.item())
    assert set(per_head) == {n for n in model.predictions if getattr(model.node_configs[n], "loss", None)}
    model.zero_grad(set_to_none=True)
    total.backward()

    exempt = {prefix for (stem, prefix) in NO_GRADIENT if stem == spec_path.stem}
    missing = []
    for name, p in model.named_parameters():
        if not p.requires_grad or any(name.startswith(e) for e in exempt):
            continue
        if p.grad is None or not bool(p.grad.abs().sum() > 0):
            missing.append(name)
        else:
            assert bool(torch.isfinite(p.grad).all()), name
    assert missing == [], f"no gradient reaches: {missing}"

    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3).step()
    unchanged = [n for n, p in model.named_parameters() if n in before and torch.equal(before[n], p.detach())]
    assert unchanged == []
    model.zero_grad(set_to_none=True)


def test_spec_eval_is_deterministic(spec_path, built):
    model = built(spec_path)
    model.eval()
    batch = model.example_batch(3, seed=2)
    with torch.no_grad():
        a, b = model(batch), model(batch)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    model.train()


def test_late_fusion_independent_members_get_no_gradient_from_the_fusion(built):
    """`training: independent`: the fused prediction does not train its members."""
    from conftest import ROOT

    model = built(ROOT / "specs" / "late_fusion.yaml")
    out = model(model.example_batch(B, seed=3))
    assert out["text_reception"].requires_grad and out["tabular_reception"].requires_grad
    assert not out["reception"].requires_grad  # no path from the fused prediction back to any parameter
