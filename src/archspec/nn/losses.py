"""Loss builders and the compiled loss: total = Σ weight × loss of each prediction."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..registry import REGISTRIES, register_builder

_EPS = 1e-7


@register_builder("loss", "cross_entropy")
def build_cross_entropy(cfg, on_probs: bool, head) -> Callable:
    weight = torch.tensor(cfg.class_weights, dtype=torch.float32) if cfg.class_weights else None

    def loss(logits, target, outputs):
        w = weight.to(logits.device) if weight is not None else None
        return F.cross_entropy(logits, target, weight=w, label_smoothing=cfg.label_smoothing)

    return loss


@register_builder("loss", "nll")
def build_nll(cfg, on_probs: bool, head) -> Callable:
    def loss(probs, target, outputs):
        return F.nll_loss(torch.log(probs.clamp_min(_EPS)), target)

    return loss


@register_builder("loss", "binary_cross_entropy")
def build_bce(cfg, on_probs: bool, head) -> Callable:
    pw = cfg.pos_weight
    pos_weight = torch.tensor(pw if isinstance(pw, list) else [pw], dtype=torch.float32) if pw is not None else None

    def loss(x, target, outputs):
        p = pos_weight.to(x.device) if pos_weight is not None else None
        if not on_probs:
            return F.binary_cross_entropy_with_logits(x, target, pos_weight=p)
        x = x.clamp(_EPS, 1 - _EPS)
        pos = target * torch.log(x) * (p if p is not None else 1.0)
        return -(pos + (1 - target) * torch.log(1 - x)).mean()

    return loss


@register_builder("loss", "mse")
def build_mse(cfg, on_probs: bool, head) -> Callable:
    return lambda y, target, outputs: F.mse_loss(y, target)


@register_builder("loss", "huber")
def build_huber(cfg, on_probs: bool, head) -> Callable:
    return lambda y, target, outputs: F.huber_loss(y, target, delta=cfg.delta)


@register_builder("loss", "contrastive")
def build_contrastive(cfg, on_probs: bool, head) -> Callable:
    """In-batch softmax: row i's positive is candidate i; identical candidates are not negatives."""
    name = head["name"]
    sim = head["module"]

    def loss(score, target, outputs):
        q, c = outputs[name + ".query"], outputs[name + ".candidate"]  # (B, D) each
        logits = sim.pairwise(q, c)  # (B, B)
        with torch.no_grad():
            same = (c.unsqueeze(1) == c.unsqueeze(0)).all(-1)  # duplicate candidates in the batch
            same.fill_diagonal_(False)
        logits = logits.masked_fill(same, torch.finfo(logits.dtype).min)
        labels = torch.arange(logits.shape[0], device=logits.device)
        out = F.cross_entropy(logits, labels)
        if cfg.symmetric:
            out = 0.5 * (out + F.cross_entropy(logits.T, labels))
        return out

    return loss


class CompiledLoss:
    """Weighted sum of every prediction's loss.

    Call with the model's outputs and the targets (by prediction name); returns
    ``(total, per_head)`` where ``per_head`` holds each unweighted loss (detached).
    """

    def __init__(self, terms: list[tuple[str, float, Callable, bool]]):
        self.terms = terms  # (name, weight, fn, needs_target)

    @property
    def weights(self) -> dict[str, float]:
        return {name: w for name, w, _, _ in self.terms}

    def values(self, outputs: dict, targets: dict) -> dict:
        """Each unweighted loss, not detached (what a learned loss weighting combines)."""
        return {name: fn(outputs[name], targets[name] if needs_target else None, outputs)
                for name, _, fn, needs_target in self.terms}

    def __call__(self, outputs: dict, targets: dict) -> tuple[torch.Tensor, dict]:
        total = None
        per_head = {}
        for name, weight, fn, needs_target in self.terms:
            value = fn(outputs[name], targets[name] if needs_target else None, outputs)
            per_head[name] = value.detach()
            term = value if weight == 1.0 else weight * value  # no extra autograd node for the default
            total = term if total is None else total + term
        if total is None:
            total = torch.zeros(())
        return total, per_head


def build_loss(model) -> CompiledLoss:
    """The compiled loss of a :class:`~archspec.nn.model.CompiledModel`."""
    terms = []
    for name in model.predictions:
        cfg = model.node_configs[name]
        loss_cfg = getattr(cfg, "loss", None)
        if loss_cfg is None:
            continue
        on_probs = model.output_kinds[name] == "probs"
        head = {"name": name, "module": model.node_module(name)}
        fn = REGISTRIES["loss"].builders[loss_cfg.type](loss_cfg, on_probs, head)
        terms.append((name, float(loss_cfg.weight), fn, loss_cfg.type != "contrastive"))
    return CompiledLoss(terms)
