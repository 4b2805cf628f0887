"""Torch builders of the heads."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_builder
from .layers import dense_stack


class Classifier(nn.Module):
    """Optional hidden layers, then a dense output layer (logits or values)."""

    def __init__(self, in_width: int, hidden: list[int], act: str, dropout: float, norm: str, outputs: int,
                 squeeze: bool = False):
        super().__init__()
        self.hidden, width = dense_stack(in_width, hidden, act, dropout, norm)
        self.out = nn.Linear(width, outputs)
        self.squeeze = squeeze

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, C), or (B,) for binary
        y = self.out(self.hidden(x) if len(self.hidden) else x)
        return y.squeeze(-1) if self.squeeze else y


def _classifier(cfg, in_shapes, ctx, outputs: int, squeeze: bool = False) -> nn.Module:
    return Classifier(ctx.width(in_shapes[0]), list(cfg.layers), cfg.activation, cfg.dropout, cfg.norm,
                      outputs, squeeze)


@register_builder("head", "multiclass")
def build_multiclass(cfg, in_shapes, ctx) -> nn.Module:
    return _classifier(cfg, in_shapes, ctx, cfg.label_space()[1])


@register_builder("head", "multilabel")
def build_multilabel(cfg, in_shapes, ctx) -> nn.Module:
    return _classifier(cfg, in_shapes, ctx, cfg.label_space()[1])


@register_builder("head", "binary")
def build_binary(cfg, in_shapes, ctx) -> nn.Module:
    return _classifier(cfg, in_shapes, ctx, 1, squeeze=True)


@register_builder("head", "regression")
def build_regression(cfg, in_shapes, ctx) -> nn.Module:
    return _classifier(cfg, in_shapes, ctx, cfg.outputs)


class Similarity(nn.Module):
    """score = sim(query, candidate), then `/ temperature` or a learned `scale * s + bias`.

    ``forward`` gives the per-pair logit `(B,)`; ``pairwise`` the `(B, B)` logits of every query
    against every candidate of the batch (for in-batch contrastive losses and retrieval).
    """

    def __init__(self, metric: str, temperature: float | None, learn_scale: bool,
                 loss_temperature: float | None = None):
        super().__init__()
        self.metric = metric
        self.temperature = temperature
        if learn_scale:
            self.scale = nn.Parameter(torch.ones(()))
            self.bias = nn.Parameter(torch.zeros(()))
        else:
            self.scale = None
            self.bias = None
        # a contrastive loss's learned temperature, as log(1 / T) (CLIP's logit scale); only the
        # loss reads it, so scores and rankings do not depend on it
        self.loss_log_scale = None if loss_temperature is None else nn.Parameter(
            torch.tensor(-math.log(loss_temperature)))

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) if self.metric == "cosine" else x

    def _calibrate(self, s: torch.Tensor) -> torch.Tensor:
        if self.temperature is not None:
            s = s / self.temperature
        if self.scale is not None:
            s = self.scale * s + self.bias
        return s

    def raw(self, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The similarity itself, `(B,)`, before temperature or scale."""
        if self.metric == "euclidean":
            return -torch.linalg.vector_norm(q - c, dim=-1)
        return (self._prep(q) * self._prep(c)).sum(-1)

    def forward(self, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # (B, D), (B, D) -> (B,)
        return self._calibrate(self.raw(q, c))

    def pairwise(self, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # (B, D), (N, D) -> (B, N)
        if self.metric == "euclidean":
            s = -torch.cdist(q, c)
        else:
            s = self._prep(q) @ self._prep(c).T
        return self._calibrate(s)


@register_builder("head", "similarity")
def build_similarity(cfg, in_shapes, ctx) -> nn.Module:
    loss = cfg.loss
    learned = None
    if loss.type == "contrastive" and loss.learn_temperature:
        learned = loss.temperature or 1.0
    return Similarity(cfg.metric, cfg.temperature, cfg.learn_scale, learned)
