"""Turning model outputs into probabilities, labels and metrics (shared by train, evaluate, predict)."""

from __future__ import annotations

import contextlib

import torch

from .graph import label_space, output_activation, prediction_kind, prediction_metrics, prediction_threshold
from .metrics import classification_metrics, decide_labels, recall_at_k, recall_ks, regression_metrics


def to_probabilities(model, name: str, out: torch.Tensor) -> torch.Tensor:
    """Probabilities of a classification prediction (or the values of a regression head), by the
    output activation its head states (a late fusion's members')."""
    activation = output_activation(model.checked.graph, name)
    if activation is None or model.output_kinds[name] == "probs":
        return out
    return torch.softmax(out, dim=-1) if activation == "softmax" else torch.sigmoid(out)


def predicted_labels(model, name: str, out: torch.Tensor) -> torch.Tensor:
    """The labels a classification prediction predicts for a batch of its outputs (see
    :func:`archspec.metrics.decide_labels`): what ``predict`` writes and what metrics score."""
    g = model.checked.graph
    return decide_labels(prediction_kind(g, name), to_probabilities(model, name, out), prediction_threshold(g, name))


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
        kind = prediction_kind(g, name)
        names = prediction_metrics(g, name)
        out = outputs[name]
        if kind == "similarity":
            ks = recall_ks(names)
            if ks:
                head = model.node_module(name)
                pair = head.pairwise(outputs[name + ".query"], outputs[name + ".candidate"])
                result.update({f"{name}/{k}": v for k, v in recall_at_k(pair, ks).items()})
            rest = [m for m in names if not m.startswith("recall@")]
            if rest and name in targets:
                m = classification_metrics("binary", to_probabilities(model, name, out), targets[name], rest)
                result.update({f"{name}/{k}": v for k, v in m.items()})
            continue
        if name not in targets:
            continue
        if kind == "regression":
            m = regression_metrics(out, targets[name], names)
        else:
            m = classification_metrics(kind, to_probabilities(model, name, out), targets[name], names,
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
