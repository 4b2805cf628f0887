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


@torch.no_grad()
def run_model(model, batches, device="cpu", keep_inputs=()) -> tuple[dict, dict, dict]:
    """Every output of the model over a data loader, with the targets, concatenated on CPU.

    Args:
        model: the compiled model.
        batches: ``(inputs, targets, rows)`` batches (a :class:`~archspec.data.Loader`).
        device: where the model is.
        keep_inputs: input keys to also collect (e.g. the candidate features a popularity baseline
            ranks by, or a contrastive loss looks up).

    Returns:
        ``(outputs, targets, inputs)`` (``inputs``: the ``keep_inputs``); empty dicts when no row was read.
    """
    model.eval()
    outs: dict = {}
    tgts: dict = {}
    kept: dict = {}
    for inputs, targets, rows in batches:
        if not len(rows):
            continue
        out = model({k: v.to(device, non_blocking=True) for k, v in inputs.items()})
        for k, v in out.items():
            outs.setdefault(k, []).append(v.float().cpu())
        for k, v in targets.items():
            tgts.setdefault(k, []).append(v)
        for k in keep_inputs:
            kept.setdefault(k, []).append(inputs[k])
    return ({k: torch.cat(v) for k, v in outs.items()}, {k: torch.cat(v) for k, v in tgts.items()},
            {k: torch.cat(v) for k, v in kept.items()})


def tensor_batches(inputs: dict, batch_size: int):
    """``(inputs, {}, rows)`` batches of tensors already in memory (a few rows from a request), for
    :func:`run_model`."""
    n = len(next(iter(inputs.values())))
    for start in range(0, n, batch_size):
        rows = torch.arange(start, min(n, start + batch_size))
        yield {k: v[start:start + batch_size] for k, v in inputs.items()}, {}, rows


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
