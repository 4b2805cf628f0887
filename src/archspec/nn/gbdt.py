"""Torch wrapper of a gradient-boosted head: LightGBM boosters called on the batch's tabular inputs.

The module has no parameters and no gradient: it turns the input tensors into a feature matrix,
asks the fitted boosters for their raw scores (logits for classification, values for regression)
and returns them as a tensor, so evaluation, prediction and late fusion treat it as any head.
Fitting and the text model files live in :mod:`archspec.gbdt`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..registry import register_builder


class GBDTHead(nn.Module):
    """Raw scores of LightGBM boosters; zeros until :meth:`set_boosters` (e.g. during the build's dry run)."""

    def __init__(self, task: str, outputs: int, categorical: list[bool], widths: list[int]):
        super().__init__()
        self.task = task
        self.outputs = outputs
        self.categorical = list(categorical)  # per input: an index input (split on natively)
        self.widths = list(widths)
        self.boosters: list | None = None

    @property
    def categorical_features(self) -> list[int]:
        """Columns of the feature matrix that hold category indices."""
        out, col = [], 0
        for cat, w in zip(self.categorical, self.widths):
            if cat:
                out.append(col)
            col += w
        return out

    def features(self, *xs: torch.Tensor) -> np.ndarray:
        """The feature matrix `(B, F)` (float64) of one batch."""
        cols = [x.detach().reshape(x.shape[0], -1).double().cpu() for x in xs]
        return torch.cat(cols, dim=1).numpy()

    def set_boosters(self, boosters: list) -> None:
        self.boosters = list(boosters)

    def trees(self) -> int:
        """Trees in every booster together (0 before fitting)."""
        return sum(b.num_trees() for b in self.boosters) if self.boosters else 0

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:  # tabular inputs -> (B, C), (B,) or (B, D)
        n = xs[0].shape[0]
        if self.boosters is None:
            out = torch.zeros(n, self.outputs)
        else:
            x = self.features(*xs)
            if self.task == "multiclass":
                out = torch.from_numpy(np.asarray(self.boosters[0].predict(x, raw_score=True)).reshape(n, -1))
            else:
                out = torch.from_numpy(np.stack([np.asarray(b.predict(x, raw_score=True)).reshape(n)
                                                 for b in self.boosters], axis=1))
        out = out.to(device=xs[0].device, dtype=torch.float32)
        return out.squeeze(-1) if self.task == "binary" else out


@register_builder("head", "gbdt")
def build_gbdt(cfg, in_shapes, ctx) -> nn.Module:
    widths = [1 if s.kind == "index" else ctx.width(s) for s in in_shapes]
    outputs = cfg.outputs if cfg.task == "regression" else (1 if cfg.task == "binary" else cfg.label_space()[1])
    return GBDTHead(cfg.task, outputs, [s.kind == "index" for s in in_shapes], widths)


class RunMember(nn.Module):
    """A head of another trained run: its outputs arrive with the batch (``"<name>.member"``, computed
    by that run's own model and preprocessing, see :mod:`archspec.members`); frozen, no parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach()


@register_builder("head", "run")
def build_run_member(cfg, in_shapes, ctx) -> nn.Module:
    return RunMember()
