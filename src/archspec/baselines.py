"""Trivial baselines a model must beat, fitted on the training split of a run.

* multiclass (and late fusions over it): always the training class frequencies (so the majority class);
* multi-label and binary: every label's training frequency as its probability;
* regression: the training mean;
* two towers: a similarity head with labelled pairs predicts the training match rate; a contrastive
  one ranks candidates by how often they appear in the training pairs (popularity).
"""

from __future__ import annotations

import hashlib

import torch

from .graph import prediction_metrics, prediction_threshold
from .prediction_kinds import home_of


def _row_keys(inputs: dict, keys: list[str]) -> list[str]:
    """A stable identity per row from the given input tensors (e.g. a candidate's features)."""
    n = len(next(iter(inputs.values())))
    out = []
    for i in range(n):
        h = hashlib.blake2b(digest_size=8)
        for k in keys:
            h.update(inputs[k][i].contiguous().numpy().tobytes())
        out.append(h.hexdigest())
    return out


def baseline_inputs(model) -> list[str]:
    """Input keys the baselines read (e.g. the candidate features a popularity baseline counts)."""
    g = model.checked.graph
    keys = [k for name in model.predictions for k in home_of(g, name).baseline_inputs(model, name)]
    return list(dict.fromkeys(keys))


def collect_inputs(table, preprocessor, rows, keys: list[str], on_bad_row: str = "error") -> dict:
    """The given input keys of every row of a split, concatenated (e.g. the candidate ids a
    contrastive loss counts). Only those inputs are built; nothing else is read."""
    from .data import Loader

    if not keys:
        return {}
    names = sorted({k.split(".")[0] for k in keys})
    parts: dict = {}
    for x, _, r in Loader(table, preprocessor, rows, batch_size=4096, inputs=names, targets=False,
                          on_bad_row=on_bad_row, name="inputs"):
        for k in keys:
            parts.setdefault(k, []).append(x[k])
    return {k: torch.cat(v) for k, v in parts.items()}


def fit_baseline(model, table, preprocessor, rows, tcfg) -> dict:
    """Statistics of the training split the baselines need (JSON-able), in one streaming pass.

    The pass reads the targets and only the inputs a popularity baseline ranks by, through the same
    data loader as training (no image is decoded unless a candidate tower reads images).
    """
    from .data import Loader

    g = model.checked.graph
    keys = baseline_inputs(model)
    inputs = sorted({k.split(".")[0] for k in keys})
    batches = Loader(table, preprocessor, rows, batch_size=4096, inputs=inputs, num_workers=0,
                     on_bad_row=tcfg.on_bad_row, name="baseline")
    homes = {name: home_of(g, name) for name in model.predictions}
    acc: dict = {}  # each kind's running statistic (see PredictionKind.baseline_update)
    n = 0
    for x, y, r in batches:
        n += len(r)
        for name, home in homes.items():
            acc[name] = home.baseline_update(model, name, acc.get(name), x, y)
    stats = {}
    for name, home in homes.items():
        st = home.baseline_stats(model, name, acc.get(name), n)
        if st is not None:
            stats[name] = st
    return stats


def baseline_metrics(model, stats: dict, x_eval: dict, y_eval: dict) -> dict:
    """Metrics of the trivial baselines on an evaluation split, keyed like the model's."""
    g = model.checked.graph
    out = {}
    for name, st in stats.items():
        m = home_of(g, name).baseline_metrics(model, name, st, x_eval, y_eval, prediction_metrics(g, name),
                                              prediction_threshold(g, name))
        out.update({f"{name}/{k}": v for k, v in m.items()})
    return out
