"""Trivial baselines a model must beat, fitted on the training split of a run.

* multiclass (and late fusions over it): always the training class frequencies (so the majority class);
* multi-label and binary: every label's training frequency as its probability;
* regression: the training mean;
* two towers: a similarity head with labelled pairs predicts the training match rate; a contrastive
  one ranks candidates by how often they appear in the training pairs (popularity).
"""

from __future__ import annotations

import hashlib

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


def fit_baseline(model, x_train: dict, y_train: dict) -> dict:
    """Statistics of the training split the baselines need (JSON-able); each prediction kind's home
    (:mod:`archspec.prediction_kinds`) says which."""
    g = model.checked.graph
    n = len(next(iter(x_train.values()))) if x_train else len(next(iter(y_train.values()), []))
    stats = {}
    for name in model.predictions:
        home = home_of(g, name)
        st = home.baseline_stats(model, name, home.baseline_update(model, name, None, x_train, y_train), n)
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
