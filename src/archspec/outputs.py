"""Turning model outputs into probabilities, labels and metrics (shared by train, evaluate, predict)."""

from __future__ import annotations

import contextlib

import torch

from .graph import label_space, output_activation, prediction_metrics, prediction_threshold
from .prediction_kinds import home_of


def to_probabilities(model, name: str, out: torch.Tensor) -> torch.Tensor:
    """Probabilities of a classification prediction (or the values of a regression head), by the
    output activation its head states (a late fusion's members')."""
    g = model.checked.graph
    if model.output_kinds[name] == "probs":  # a soft vote already averaged probabilities
        return out
    return home_of(g, name).probabilities(out, output_activation(g, name))


def predicted_labels(model, name: str, out: torch.Tensor) -> torch.Tensor:
    """The labels a classification prediction predicts for a batch of its outputs (see
    :func:`archspec.metrics.decide_labels`): what ``predict`` writes and what metrics score."""
    g = model.checked.graph
    return home_of(g, name).decide(to_probabilities(model, name, out), prediction_threshold(g, name))


def batches(n: int, batch_size: int, order: torch.Tensor | None = None):
    idx = order if order is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield idx[start:start + batch_size]


def take(d: dict, idx: torch.Tensor) -> dict:
    return {k: v[idx] for k, v in d.items()}


@torch.no_grad()
def run_model(model, inputs: dict, batch_size: int, device="cpu") -> dict:
    """Every output of the model over a whole split, concatenated on CPU."""
    model.eval()
    n = len(next(iter(inputs.values())))
    chunks: dict = {}
    for idx in batches(n, batch_size):
        out = model({k: v.to(device) for k, v in take(inputs, idx).items()})
        for k, v in out.items():
            chunks.setdefault(k, []).append(v.float().cpu())
    return {k: torch.cat(v) for k, v in chunks.items()}


def evaluate_outputs(model, outputs: dict, targets: dict, loss_fn=None, inputs: dict | None = None) -> dict:
    """Metrics of every prediction, keyed ``HEAD/METRIC``, plus per-head and total losses (``inputs``
    lets a contrastive loss identify candidates)."""
    g = model.checked.graph
    result = {}
    for name in model.predictions:
        m = home_of(g, name).metrics(model, name, outputs, targets, prediction_metrics(g, name),
                                     prediction_threshold(g, name))
        result.update({f"{name}/{k}": v for k, v in m.items()})
    if loss_fn is not None:
        with torch.no_grad():
            total, per = loss_fn(outputs, targets, inputs)
        result["loss"] = float(total)
        result.update({f"{k}/loss": float(v) for k, v in per.items()})
    return result


def label_names(model, preprocessor, name: str):
    space, _ = label_space(model.checked.graph, name)
    if preprocessor is not None:
        with contextlib.suppress(KeyError):  # a prediction without fitted labels (regression, pairs)
            return preprocessor.label_names(name)
    return space[2] if space else None
