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

from .graph import prediction_kind, prediction_metrics, prediction_threshold
from .metrics import classification_metrics, recall_at_k, recall_ks, regression_metrics


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
    """Statistics of the training split the baselines need (JSON-able)."""
    g = model.checked.graph
    stats = {}
    for name in model.predictions:
        kind = prediction_kind(g, name)
        if kind == "similarity":
            if name in y_train:
                stats[name] = {"rate": float(y_train[name].float().mean())}
            else:
                cand = model.similarity[name][1]
                keys = _row_keys(x_train, model.input_keys([cand]))
                counts: dict = {}
                for k in keys:
                    counts[k] = counts.get(k, 0) + 1
                stats[name] = {"popularity": counts, "keys": model.input_keys([cand])}
        elif name in y_train:
            y = y_train[name]
            if kind == "multiclass":
                c = model.shapes[name].dims[0]
                stats[name] = {"prior": torch.bincount(y.long(), minlength=c).double().div(len(y)).tolist()}
            elif kind == "regression":
                stats[name] = {"mean": y.double().mean(0).tolist()}
            else:
                stats[name] = {"prior": y.double().mean(0).reshape(-1).tolist()}
    return stats


def baseline_metrics(model, stats: dict, x_eval: dict, y_eval: dict) -> dict:
    """Metrics of the trivial baselines on an evaluation split, keyed like the model's."""
    g = model.checked.graph
    n = len(next(iter(x_eval.values())))
    out = {}
    for name, st in stats.items():
        kind = prediction_kind(g, name)
        names = prediction_metrics(g, name)
        cfg = model.node_configs[name]
        if kind == "similarity":
            if "popularity" in st:
                keys = _row_keys(x_eval, st["keys"])
                pop = torch.tensor([float(st["popularity"].get(k, 0)) for k in keys])
                # ties (e.g. items never seen in training) are broken at random, with a fixed seed
                noise = torch.rand(n, n, generator=torch.Generator().manual_seed(0)) * 1e-3
                pairwise = pop.unsqueeze(0).expand(n, n) + noise
                m = recall_at_k(pairwise, recall_ks(names))
            else:
                rest = [x for x in names if not x.startswith("recall@")]
                m = classification_metrics("binary", torch.full((n,), st["rate"]), y_eval[name], rest)
        elif name not in y_eval:
            continue
        elif kind == "regression":
            pred = torch.tensor(st["mean"]).expand(n, -1)
            m = regression_metrics(pred, y_eval[name], names)
        else:
            prior = torch.tensor(st["prior"])
            probs = prior.expand(n, -1).clone() if kind != "binary" else prior.expand(n).clone()
            m = classification_metrics(kind, probs, y_eval[name], names, prediction_threshold(g, name))
        out.update({f"{name}/{k}": v for k, v in m.items()})
    return out
