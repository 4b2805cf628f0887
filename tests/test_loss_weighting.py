"""Learned loss weighting (``training.loss_weighting``): the papers' formulas, behaviour, logging, resume."""

from __future__ import annotations

import json
import math

import pytest
import torch

from archspec.loss_weighting import DWAWeighting, GradNormWeighting, UncertaintyWeighting
from archspec.nn.losses import CompiledLoss
from archspec.pipeline import check_text
from archspec.train import fit

from test_train import _assert_identical, _small, _weights

QUIET = dict(progress=False, log=lambda *a: None)


def _loss(names, weights=None):
    """A compiled loss whose outputs are the losses themselves (``outputs[name]`` is a scalar)."""
    weights = weights or [1.0] * len(names)
    return CompiledLoss([(n, w, (lambda out, target, outputs: out), False) for n, w in zip(names, weights)])


def test_uncertainty_loss_is_the_papers_formula():
    # Kendall et al. 2018, eq. 7 and 10 with s = log σ²: regression 1/(2σ²) L + log σ,
    # classification 1/σ² L + log σ
    fn = _loss(["cls", "reg"], [1.0, 2.0])
    w = UncertaintyWeighting(fn, regression=[False, True])
    with torch.no_grad():
        w.log_var.copy_(torch.tensor([0.3, -0.7]))
    l_cls, l_reg = torch.tensor(1.25), torch.tensor(4.0)
    total, per_head = w({"cls": l_cls, "reg": l_reg}, {})
    s1, s2 = 0.3, -0.7
    sigma1, sigma2 = math.sqrt(math.exp(s1)), math.sqrt(math.exp(s2))
    expected = (1 / sigma1 ** 2) * 1.25 + math.log(sigma1) + 2.0 * (1 / (2 * sigma2 ** 2)) * 4.0 + math.log(sigma2)
    assert float(total.detach()) == pytest.approx(expected, rel=1e-6)
    assert w.weights() == pytest.approx([math.exp(-s1), 2.0 * 0.5 * math.exp(-s2)], rel=1e-6)
    assert float(per_head["reg"]) == 4.0  # per-head losses stay unweighted
    total.backward()
    # d/ds [c e^{-s} L + s/2] = -c e^{-s} L + 1/2
    assert w.log_var.grad.tolist() == pytest.approx([-math.exp(-s1) * 1.25 + 0.5, -math.exp(-s2) * 4.0 + 0.5],
                                                    rel=1e-5)


def _two_task_case():
    """A shared layer W feeding two heads; task b's loss is 10× larger, so its gradient on W is too."""
    torch.manual_seed(0)
    shared = torch.nn.Linear(4, 8)
    head_a, head_b = torch.nn.Linear(8, 1), torch.nn.Linear(8, 1)
    x = torch.randn(32, 4)
    ya, yb = torch.randn(32, 1), torch.randn(32, 1)

    def outputs():
        h = torch.relu(shared(x))
        return {"a": torch.nn.functional.mse_loss(head_a(h), ya),
                "b": 10.0 * torch.nn.functional.mse_loss(head_b(h), yb)}

    return shared, outputs


def test_gradnorm_moves_toward_equal_gradient_norms_and_keeps_the_sum():
    shared, outputs = _two_task_case()
    gn = GradNormWeighting(_loss(["a", "b"]), shared.weight, alpha=0.0, lr=0.05)
    out = outputs()
    gn(out, {}, train=True)
    first = gn.last_norms  # w_i ||∇_W L_i|| at equal weights
    assert first[1] > 3 * first[0]
    for _ in range(60):
        gn(outputs(), {}, train=True)
        gn.step()
        assert sum(gn.weights()) == pytest.approx(2.0, abs=1e-5)
    w = gn.weights()
    assert w[0] > 1.5 > 0.5 > w[1]  # the task with the larger gradient is weighted down
    gn(outputs(), {}, train=True)
    a, b = gn.last_norms
    assert abs(a - b) / (a + b) < abs(first[0] - first[1]) / sum(first) / 4


def test_gradnorm_alpha_pulls_back_the_task_that_learns_faster():
    shared, outputs = _two_task_case()
    gn = GradNormWeighting(_loss(["a", "b"]), shared.weight, alpha=1.5, lr=0.05)
    gn(outputs(), {}, train=True)  # records L_i(0)
    gn.initial = [gn.initial[0], gn.initial[1] * 4]  # as if task b had fallen to a quarter of its start
    out = outputs()
    values = [float(v.detach()) for v in out.values()]
    gn(out, {}, train=True)
    r = [values[0] / gn.initial[0], values[1] / gn.initial[1]]
    r = [x / (sum(r) / 2) for x in r]
    assert r[0] > 1 > r[1]
    g = gn._grad.clone()
    # at equal weights task a's target norm (mean × r^α) rises: its weight's gradient pushes it up
    norms = gn.last_norms
    target_a = sum(norms) / 2 * r[0] ** 1.5
    assert (norms[0] < target_a) == (g[0] < 0)


def test_a_loss_with_weight_zero_is_left_out():
    shared, outputs = _two_task_case()
    fn = _loss(["a", "b", "off"], [1.0, 1.0, 0.0])

    def three():
        out = outputs()
        return {**out, "off": out["a"] * 3.0}

    gn = GradNormWeighting(fn, shared.weight, alpha=1.5, lr=0.05)
    for _ in range(5):
        gn(three(), {}, train=True)
        gn.step()
    w = gn.weights()
    assert w[2] == 0.0 and sum(w) == pytest.approx(2.0, abs=1e-5)
    unc = UncertaintyWeighting(fn)
    total, _ = unc(three(), {})
    total.backward()
    assert unc.log_var.grad[2] == 0.0 and unc.log_var.grad[0] != 0.0


def test_dwa_weights_follow_the_loss_ratios():
    fn = _loss(["a", "b"])
    dwa = DWAWeighting(fn, temperature=2.0)
    for epoch_losses in ([1.0, 1.0], [0.5, 1.0]):  # two epochs at equal weights
        assert dwa.weights() == [1.0, 1.0]
        dwa({"a": torch.tensor(epoch_losses[0]), "b": torch.tensor(epoch_losses[1])}, {}, train=True)
        dwa.end_epoch()
    ra, rb = 0.5 / 1.0, 1.0 / 1.0
    ea, eb = math.exp(ra / 2), math.exp(rb / 2)
    assert dwa.weights() == pytest.approx([2 * ea / (ea + eb), 2 * eb / (ea + eb)])
    assert sum(dwa.weights()) == pytest.approx(2.0)


def test_learned_weighting_needs_two_losses_and_gradnorm_a_shared_layer():
    base = ("archspec: 1\nname: m\ninputs: {x: {type: numeric, columns: [a]}, u: {type: numeric, columns: [b]}}\n"
            "encoders: {e: {type: mlp, input: x, layers: [4]}, f: {type: mlp, input: u, layers: [4]}}\n")
    one = check_text(base + "heads: {y: {type: regression, from: e}}\ntraining: {loss_weighting: {type: dwa}}\n")
    assert [d.code for d in one.diagnostics if d.severity == "error"] == ["E-LOSS-WEIGHTING"]
    apart = check_text(base + "heads: {y: {type: regression, from: e}, z: {type: regression, from: f}}\n"
                       "training: {loss_weighting: {type: gradnorm}}\n")
    assert [d.code for d in apart.diagnostics] == ["E-LOSS-WEIGHTING"]
    assert "share no trainable" in apart.diagnostics[0].message
    ok = check_text(base + "heads: {y: {type: regression, from: e}, z: {type: regression, from: f}}\n"
                    "training: {loss_weighting: {type: uncertainty}}\n")
    assert ok.ok()


def _rows(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", ["uncertainty", "gradnorm", "dwa"])
def test_weights_are_logged_learned_and_resume_is_bit_identical(method, tmp_path):
    spec, data = _small(tmp_path, epochs=3, n=64, **{"  checkpoint_every: 1\n":
                                                      f"  loss_weighting: {{type: {method}}}\n"})
    ref = fit(spec, data=str(data), out=str(tmp_path / "ref"), **QUIET).run_dir
    rows = _rows(ref)
    assert len(rows) == 3
    for r in rows:
        assert {"weight/y", "weight/z", "train/y/loss", "train/z/loss"} <= set(r)
    if method == "dwa":  # equal (prior-weighted) weights for two epochs, then the ratio rule
        assert rows[0]["weight/y"] == rows[1]["weight/y"] != rows[2]["weight/y"]
    else:  # learned every step
        assert rows[0]["weight/y"] != rows[-1]["weight/y"]
    if method == "uncertainty":
        assert rows[-1]["log_variance/y"] != 0.0
    if method == "gradnorm":
        assert rows[-1]["weight/y"] + rows[-1]["weight/z"] == pytest.approx(2.0, abs=1e-5)
    # stop in the middle of the second epoch, then resume: same weights and same loss weighting state
    run = tmp_path / "run"
    fit(spec, data=str(data), out=str(run), max_steps=9, **QUIET)
    fit(resume=str(run), max_steps=1000, **QUIET)
    _assert_identical(_weights(ref), _weights(run))
    assert _rows(run)[-1] == {**_rows(ref)[-1], "time_s": _rows(run)[-1]["time_s"]}


def test_learning_curves_show_the_weights_when_they_change(tmp_path):
    from PIL import Image

    from archspec.plot import plot_run

    def write(run, weights):
        run.mkdir()
        rows = [{"epoch": e + 1, "train_loss": 1.0 / (e + 1), "val/loss": 1.0, "val/y/accuracy": 0.5,
                 "weight/y": w, "weight/z": 2 - w} for e, w in enumerate(weights)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return Image.open(plot_run(run)).size[0]

    fixed = write(tmp_path / "fixed", [1.0, 1.0, 1.0])
    learned = write(tmp_path / "learned", [1.0, 1.2, 1.5])
    assert learned > fixed  # a third panel: the effective loss weights per epoch


def test_the_last_shared_layer_comes_from_the_graph():
    from archspec.build import compile_spec
    from archspec.loss_weighting import last_shared_layer

    from conftest import ROOT

    node, names, _ = last_shared_layer(compile_spec(ROOT / "specs" / "movie_multitask_gradnorm.yaml"))
    assert (node, names) == ("film", ["film.dense.0.weight"])
    # an mmoe gives each task its own mixture, and `film` only concatenates: the layers feeding it
    node, names, _ = last_shared_layer(compile_spec(ROOT / "specs" / "movie_mmoe.yaml"))
    assert node == "film"
    assert names == ["text_encoder.embedding.weight", "language_encoder.embedding.weight",
                     "country_encoder.embedding.weight", "numbers_encoder.0.weight"]


def test_gradnorm_can_be_told_which_shared_layer_to_watch():
    from archspec.build import compile_spec
    from archspec.loss_weighting import last_shared_layer

    from conftest import ROOT

    text = (ROOT / "specs" / "movie_multitask_gradnorm.yaml").read_text()
    model = compile_spec(text.replace("{type: gradnorm, alpha: 1.5}", "{type: gradnorm, layer: text_encoder}"),
                         dry_run=False)
    assert last_shared_layer(model, model.checked.spec.training.loss_weighting.layer)[1] == \
        ["text_encoder.embedding.weight"]
    typo = check_text(text.replace("{type: gradnorm, alpha: 1.5}", "{type: gradnorm, layer: txt_encoder}"))
    (d,) = typo.diagnostics
    assert (d.code, d.hint) == ("E-REF", "did you mean 'text_encoder'?")


def test_a_learned_weighting_is_refused_with_several_processes():
    from archspec.build import compile_loss, compile_spec
    from archspec.errors import TrainingError
    from archspec.loss_weighting import make_weighting

    from conftest import ROOT

    model = compile_spec(ROOT / "specs" / "movie_multitask_dwa.yaml", dry_run=False)
    with pytest.raises(TrainingError, match="not supported with 2 processes"):
        make_weighting(model.checked.spec.training.loss_weighting, model, compile_loss(model), world=2)
