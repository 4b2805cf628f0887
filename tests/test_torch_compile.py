"""A compiled spec works under ``torch.compile``: same outputs (and gradients) as eager.

The default backend here is ``aot_eager``: it runs Dynamo's graph capture and AOTAutograd (the parts
that break on Python-side tricks in a model) without Inductor's C++ code generation, which takes
~50 s cold on 2 CPU cores. Set ``ARCHSPEC_TEST_INDUCTOR=1`` to also run the Inductor test.
"""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")

from archspec.build import compile_spec  # noqa: E402

from conftest import ROOT  # noqa: E402

TOL = dict(atol=1e-4, rtol=1e-4)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _check_eval(spec: str, backend: str) -> None:
    model = compile_spec(ROOT / "specs" / f"{spec}.yaml").eval()
    compiled = torch.compile(model, backend=backend, fullgraph=True)  # no graph breaks in a compiled spec
    for size, seed in ((4, 1), (7, 2)):  # a second batch size: recompiles with a dynamic batch
        batch = model.example_batch(size, seed=seed)
        with torch.no_grad():
            want, got = model(batch), compiled(batch)
        assert list(got) == list(want)
        for k in want:
            torch.testing.assert_close(got[k], want[k], **TOL)


def test_two_tower_compiles_and_matches_eager():
    _check_eval("two_tower", "aot_eager")


def test_early_fusion_compiles_and_matches_eager():
    """BERT and a CNN fused at the feature level (text with an attention mask, images)."""
    _check_eval("early_fusion", "aot_eager")


def test_compiled_training_step_matches_eager_gradients():
    spec = ROOT / "specs" / "two_tower.yaml"
    eager, model = compile_spec(spec), compile_spec(spec)
    model.load_state_dict(eager.state_dict())
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    batch = eager.example_batch(8, seed=4)
    target = torch.rand(8)
    for m, f in ((eager, eager), (model, compiled)):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(f(batch)["match"], target)
        loss.backward()
    grads = dict(model.named_parameters())
    for name, p in eager.named_parameters():
        torch.testing.assert_close(grads[name].grad, p.grad, **TOL)


@pytest.mark.integration
@pytest.mark.skipif(os.environ.get("ARCHSPEC_TEST_INDUCTOR") != "1",
                    reason="Inductor compiles C++ (~50 s cold on 2 cores); set ARCHSPEC_TEST_INDUCTOR=1")
def test_two_tower_with_inductor():
    _check_eval("two_tower", "inductor")
