"""Torch builders of the fusions: `early` (features) and `late` (predictions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import decide_labels
from ..registry import register_builder
from .layers import L2Norm, dense_stack, norm1d


class EarlyFusion(nn.Module):
    """Per-branch projection and normalisation, concatenation, dense layers."""

    def __init__(self, projections: list[nn.Module], norms: list[nn.Module], dense: nn.Module):
        super().__init__()
        self.project = nn.ModuleList(projections)
        self.branch_norm = nn.ModuleList(norms)
        self.dense = dense

    def forward(self, *branches: torch.Tensor) -> torch.Tensor:  # each (B, D_i) -> (B, D_out)
        xs = [n(p(x)) for x, p, n in zip(branches, self.project, self.branch_norm)]
        return self.dense(torch.cat(xs, dim=-1))


@register_builder("fusion", "early")
def build_early(cfg, in_shapes, ctx) -> nn.Module:
    projections, norms, widths = [], [], []
    for name, shape in zip(cfg.inputs, in_shapes):
        w = ctx.width(shape)
        p = cfg.project.get(name) if isinstance(cfg.project, dict) else cfg.project
        projections.append(nn.Linear(w, p) if p else nn.Identity())
        w = p or w
        widths.append(w)
        if cfg.branch_norm == "l2":
            norms.append(L2Norm())
        else:
            norms.append(norm1d(cfg.branch_norm, w))
    dense, _ = dense_stack(sum(widths), list(cfg.layers), cfg.activation, cfg.dropout, cfg.norm)
    return EarlyFusion(projections, norms, dense)


def _to_probs(x: torch.Tensor, kind: str, is_probs: bool) -> torch.Tensor:
    if is_probs:
        return x
    return torch.softmax(x, dim=-1) if kind == "multiclass" else torch.sigmoid(x)


def _to_logits(x: torch.Tensor, kind: str, is_probs: bool) -> torch.Tensor:
    if not is_probs:
        return x
    x = x.clamp(1e-7, 1 - 1e-7)
    return torch.log(x) if kind == "multiclass" else torch.logit(x)


class LateFusion(nn.Module):
    """Combines member predictions that share one label space.

    Members give logits (heads) or probabilities (other late fusions); the output is probabilities,
    except for `logit_average` (logits).
    """

    def __init__(self, combine: str, weights: list[float], kind: str, member_probs: list[bool],
                 independent: bool, threshold: float | None = 0.5):
        super().__init__()
        self.combine = combine
        self.kind = kind
        self.member_probs = list(member_probs)
        self.independent = independent
        self.threshold = threshold
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))
        if combine == "learned":
            self.weight_logits = nn.Parameter(torch.zeros(len(weights)))

    def member_weights(self) -> torch.Tensor:
        if self.combine == "learned":
            return torch.softmax(self.weight_logits, dim=0)
        return self.weights

    def forward(self, *members: torch.Tensor) -> torch.Tensor:  # each (B, C) or (B,) -> same
        if self.independent:
            members = tuple(m.detach() for m in members)
        w = self.member_weights()
        if self.combine == "logit_average":
            xs = [_to_logits(m, self.kind, p) for m, p in zip(members, self.member_probs)]
        else:
            xs = [_to_probs(m, self.kind, p) for m, p in zip(members, self.member_probs)]
            if self.combine == "hard_vote":
                if self.kind == "multiclass":
                    xs = [F.one_hot(x.argmax(-1), x.shape[-1]).to(x.dtype) for x in xs]
                else:
                    xs = [decide_labels(self.kind, x, self.threshold).to(x.dtype) for x in xs]
        stacked = torch.stack(xs, dim=0)  # (M, B, ...)
        w = w.to(stacked.dtype).reshape(-1, *([1] * (stacked.dim() - 1)))
        return (stacked * w).sum(0)


@register_builder("fusion", "late")
def build_late(cfg, in_shapes, ctx) -> nn.Module:
    n = len(cfg.inputs)
    weights = list(cfg.weights) if cfg.weights is not None and cfg.combine not in ("soft_vote", "learned") \
        else [1.0 / n] * n
    kind = ctx.prediction_kind(cfg.inputs[0])
    member_probs = [s.kind == "probs" for s in in_shapes]
    # the fused prediction's own threshold, else its first member's: graph.prediction_threshold
    threshold = cfg.threshold if cfg.threshold is not None else ctx.prediction_threshold(cfg.inputs[0])
    return LateFusion(cfg.combine, weights, kind, member_probs, cfg.training == "independent", threshold)
