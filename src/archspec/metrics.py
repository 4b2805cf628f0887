"""Validation metrics per prediction, computed from whole-split predictions (not batch averages)."""

from __future__ import annotations

import math

import torch

from .spec.metrics import RECALL_AT


def _prf(tp, fp, fn):
    p = tp / (tp + fp) if (tp + fp) > 0 else 0.0
    r = tp / (tp + fn) if (tp + fn) > 0 else 0.0
    f = 2 * p * r / (p + r) if (p + r) > 0 else 0.0
    return p, r, f


def _confusion(pred: torch.Tensor, true: torch.Tensor):
    """Per-class tp, fp, fn from (N, C) 0/1 predictions and targets."""
    pred, true = pred.bool(), true.bool()
    tp = (pred & true).sum(0).double()
    fp = (pred & ~true).sum(0).double()
    fn = (~pred & true).sum(0).double()
    return tp, fp, fn


def prf_scores(pred01: torch.Tensor, true01: torch.Tensor) -> dict:
    """precision/recall/F1, micro and macro, of (N, C) binary indicator matrices."""
    tp, fp, fn = _confusion(pred01, true01)
    out = {}
    p, r, f = _prf(tp.sum().item(), fp.sum().item(), fn.sum().item())
    out.update(precision_micro=p, recall_micro=r, f1_micro=f)
    per = [_prf(a.item(), b.item(), c.item()) for a, b, c in zip(tp, fp, fn)]
    n = max(len(per), 1)
    out.update(precision_macro=sum(x[0] for x in per) / n, recall_macro=sum(x[1] for x in per) / n,
               f1_macro=sum(x[2] for x in per) / n)
    return out


def binary_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """ROC AUC by the rank statistic (ties get average ranks); NaN if one class is absent."""
    scores, labels = scores.double().flatten(), labels.flatten().bool()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = torch.argsort(scores)
    s = scores[order]
    ranks = torch.empty_like(s)
    i = 0
    n = len(s)
    while i < n:  # average ranks over ties
        j = i
        while j + 1 < n and s[j + 1] == s[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2.0 + 1.0
        i = j + 1
    r = torch.empty_like(ranks)
    r[order] = ranks
    return float((r[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _mean_auc(probs: torch.Tensor, onehot: torch.Tensor) -> float:
    vals = [binary_auc(probs[:, k], onehot[:, k]) for k in range(probs.shape[1])]
    vals = [v for v in vals if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


# The one rule that decides labels from probabilities lives with the prediction kinds, torch-free, so
# the torch-free serving runtime applies it too; metrics, predict and hard votes import it from here.
from .prediction_kinds import DEFAULT_THRESHOLD, decide_labels  # noqa: E402, F401


def classification_metrics(kind: str, probs: torch.Tensor, target: torch.Tensor, names: list[str],
                           threshold: float | None = None) -> dict:
    """Metrics of a multiclass (probs (N, C), target (N,)), multilabel ((N, L), (N, L)) or binary
    ((N,), (N,)) prediction."""
    out = {}
    if kind == "multiclass":
        c = probs.shape[1]
        pred = decide_labels(kind, probs)
        onehot_t = torch.nn.functional.one_hot(target.long(), c)
        onehot_p = torch.nn.functional.one_hot(pred, c)
        out["accuracy"] = (pred == target).double().mean().item()
        out.update(prf_scores(onehot_p, onehot_t))
        if "auc" in names:
            out["auc"] = _mean_auc(probs, onehot_t)
    else:
        if probs.dim() == 1:
            probs, target = probs.unsqueeze(1), target.unsqueeze(1)
        pred = decide_labels(kind, probs, threshold)
        t = target.round().long()
        out["binary_accuracy"] = (pred == t).double().mean().item()
        out["accuracy"] = (pred == t).all(1).double().mean().item() if kind == "multilabel" else out["binary_accuracy"]
        out.update(prf_scores(pred, t))
        if "auc" in names:
            out["auc"] = _mean_auc(probs, t)
    return {k: out[k] for k in names if k in out}


def regression_metrics(pred: torch.Tensor, target: torch.Tensor, names: list[str]) -> dict:
    err = (pred.double() - target.double())
    mse = err.pow(2).mean().item()
    out = {"mae": err.abs().mean().item(), "mse": mse, "rmse": math.sqrt(mse)}
    var = (target.double() - target.double().mean(0)).pow(2).mean().item()
    out["r2"] = 1 - mse / var if var > 0 else math.nan
    return {k: out[k] for k in names if k in out}


def recall_at_k(pairwise: torch.Tensor, ks: list[int]) -> dict:
    """Share of queries whose own candidate (the diagonal) ranks in the top K of all candidates.

    Args:
        pairwise: `(N, N)` scores of every query against every candidate of the split.
    """
    pos = pairwise.diagonal().unsqueeze(1)  # (N, 1)
    rank = (pairwise > pos).sum(1)  # candidates scored strictly higher than the positive
    return {f"recall@{k}": (rank < k).double().mean().item() for k in ks}


def recall_ks(names: list[str]) -> list[int]:
    return [int(RECALL_AT.match(n).group(1)) for n in names if RECALL_AT.match(n)]
