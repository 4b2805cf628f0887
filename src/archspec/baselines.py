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


def baseline_inputs(model) -> list[str]:
    """Input keys the baselines read (the candidate features of contrastive two-tower heads)."""
    keys = []
    for name in model.predictions:
        if prediction_kind(model.checked.graph, name) == "similarity" and name in model.similarity:
            keys += model.input_keys([model.similarity[name][1]])
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
    sums: dict = {}
    counts: dict = {}
    n = 0
    for x, y, r in batches:
        n += len(r)
        for name in model.predictions:
            kind = prediction_kind(g, name)
            if kind == "similarity" and name not in y:
                if name not in model.similarity:
                    continue
                pop = counts.setdefault(name, {})
                for k in _row_keys(x, model.input_keys([model.similarity[name][1]])):
                    pop[k] = pop.get(k, 0) + 1
            elif name in y:
                t = y[name]
                if kind == "multiclass":
                    part = torch.bincount(t.long(), minlength=model.shapes[name].dims[0]).double()
                else:
                    part = t.double().sum(0).reshape(-1) if kind != "regression" else t.double().sum(0)
                sums[name] = part if name not in sums else sums[name] + part
    stats = {}
    for name in model.predictions:
        kind = prediction_kind(g, name)
        if name in counts:
            stats[name] = {"popularity": counts[name], "keys": model.input_keys([model.similarity[name][1]])}
        elif name in sums:
            avg = (sums[name] / max(n, 1)).tolist()
            if kind == "similarity":
                stats[name] = {"rate": float(avg[0])}
            elif kind == "regression":
                stats[name] = {"mean": avg}
            else:
                stats[name] = {"prior": avg}
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
