"""One home per prediction kind: what a ``multiclass``, ``multilabel``, ``binary``, ``regression`` or
``similarity`` prediction means once the model has run.

A head config says *which* kind it predicts (its ``kind``), its target column, its output activation
and its threshold (see :mod:`archspec.graph`). Everything that depends on the kind after that lives in
one :class:`PredictionKind` object here, so evaluation, prediction, baselines and export ask it rather
than switching on the kind's name:

* ``probabilities(out, activation)``: probabilities (or values) from the model's outputs;
* ``decide(probs, threshold)``: the labels, by the one rule :func:`decide_labels`;
* ``columns(name, out, probs, labels, label_names)``: the columns ``archspec predict`` writes;
* ``shown(name, pred, text)``: how ``predict --show`` prints one row's prediction;
* ``metrics(...)``: its metrics on labelled rows;
* ``baseline_update`` / ``baseline_stats`` / ``baseline_metrics``: its trivial baseline (majority class,
  label frequency, mean, match rate or popularity), fitted batch by batch;
* ``export_activation(cfg, shape)`` and ``meaning``: what an exported output of that kind holds.

How to add a prediction kind
----------------------------
1. Give its head config (``spec/heads.py`` or a plugin) ``kind = "NAME"`` (plus ``output_activation``
   and a ``threshold`` field if it has one) and register the config and builder as usual.
2. Subclass :class:`PredictionKind` (or the closest existing one), set ``name`` and ``meaning``,
   override what differs, and decorate it with ``@register_prediction_kind``. A plugin does the same
   in the module its ``archspec.components`` entry point imports; it is picked up on first use.
3. ``tests/test_prediction_kinds.py`` fails for a head kind without a home here.

This module imports torch only inside the methods that compute with it: ``import`` stays light, and the
torch-free serving runtime (:mod:`archspec.serving`) lays out its columns with the same homes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from .errors import BuildError

KINDS: dict[str, PredictionKind] = {}
DEFAULT_THRESHOLD = 0.5


def decide_labels(kind: str, probs, threshold: float | None = None):
    """The labels a prediction predicts from its probabilities — the one rule behind metrics,
    ``archspec predict``, hard votes and the torch-free serving runtime (torch tensors or numpy
    arrays alike; also importable as ``archspec.metrics.decide_labels``).

    ``multiclass``: the index of the most probable class, ``(N,)``. ``multilabel``/``binary``
    (and a similarity's probability): 1 where the probability is above ``threshold`` (the head's,
    see :func:`archspec.graph.prediction_threshold`; 0.5 when ``None``), else 0, same shape as
    ``probs`` (int64).

    Example:
        >>> import numpy as np
        >>> decide_labels("multilabel", np.array([[0.2, 0.7]]), 0.0).tolist()
        [[1, 1]]
        >>> decide_labels("multiclass", np.array([[0.2, 0.7, 0.1]])).tolist()
        [1]
    """
    if kind == "multiclass":
        return probs.argmax(-1)
    above = probs > (DEFAULT_THRESHOLD if threshold is None else threshold)
    return above.long() if hasattr(above, "long") else above.astype("int64")


def register_prediction_kind(cls: type[PredictionKind]) -> type[PredictionKind]:
    """Class decorator: the home of prediction kind ``cls.name`` (a duplicate name is an error)."""
    from .registry import RegistryError

    if not cls.name:
        raise RegistryError(f"{cls.__name__} has no prediction kind `name`")
    if cls.name in KINDS:
        raise RegistryError(f"duplicate prediction kind '{cls.name}'")
    KINDS[cls.name] = cls()
    return cls


def kind_home(kind: str | None) -> PredictionKind:
    """The :class:`PredictionKind` of ``kind`` (plugins are loaded on a miss).

    Raises:
        BuildError: no home for that kind (a head type registered without one).
    """
    if kind not in KINDS:
        from .registry import load_plugins

        load_plugins()
    if kind not in KINDS:
        from .errors import did_you_mean

        hint = did_you_mean(str(kind), KINDS)
        raise BuildError(f"prediction kind '{kind}' has no home in archspec.prediction_kinds"
                         + (f" — {hint}" if hint else "") + f"; known: {', '.join(sorted(KINDS))}. "
                         "A plugin head kind needs @register_prediction_kind")
    return KINDS[kind]


def home_of(graph, name: str) -> PredictionKind:
    """The :class:`PredictionKind` of prediction node ``name`` (a late fusion's is its members')."""
    from .graph import prediction_kind

    return kind_home(prediction_kind(graph, name))


class PredictionKind(ABC):
    """A classification kind by default: labels decided from probabilities."""

    name: ClassVar[str] = ""
    #: one line on what an exported output of this kind holds (the manifest's outputs)
    meaning: ClassVar[str] = ""
    #: the rule of :func:`archspec.metrics.decide_labels` and ``classification_metrics`` it follows
    #: (``multiclass``, ``multilabel`` or ``binary``), so a subclass under a new name keeps it
    decides_as: ClassVar[str] = "binary"

    # --- outputs → probabilities → labels ---------------------------------------------------
    def probabilities(self, out, activation: str | None):
        """Probabilities from raw outputs by the head's output activation (``None``: as they are)."""
        import torch

        if activation is None:
            return out
        return torch.softmax(out, dim=-1) if activation == "softmax" else torch.sigmoid(out)

    def decide(self, probs, threshold: float | None = None):
        """The labels (see :func:`decide_labels`); ``None`` for values."""
        return decide_labels(self.decides_as, probs, threshold)

    # --- what predict writes and shows -----------------------------------------------------
    @abstractmethod
    def columns(self, name: str, out, probs, labels, label_names: list | None) -> dict:
        """``{column: array}`` that ``archspec predict`` writes for ``name``."""

    def shown(self, name: str, pred, text) -> str:
        """One row's prediction in ``predict --show`` (``pred``: that row of the predictions)."""
        return text(pred[name])

    # --- metrics ---------------------------------------------------------------------------
    def metrics(self, model, name: str, outputs: dict, targets: dict, names: list[str], threshold) -> dict:
        """Metrics ``names`` of prediction ``name`` (``{}`` without its targets)."""
        from .metrics import classification_metrics
        from .outputs import to_probabilities

        if name not in targets:
            return {}
        return classification_metrics(self.decides_as, to_probabilities(model, name, outputs[name]), targets[name],
                                      names, threshold)

    # --- trivial baseline ------------------------------------------------------------------
    def baseline_inputs(self, model, name: str) -> list[str]:
        """Input keys its baseline reads besides the targets (fitting streams only these)."""
        return []

    def baseline_update(self, model, name: str, acc, x: dict, y: dict):
        """Add one batch (inputs ``x``, targets ``y``) to the running statistic ``acc`` (``None`` at
        first); returns the new one. The default sums the targets per label."""
        if name not in y:
            return acc
        part = y[name].double().sum(0).reshape(-1)
        return part if acc is None else acc + part

    def baseline_stats(self, model, name: str, acc, n: int) -> dict | None:
        """The JSON-able baseline of ``n`` training rows from the final ``acc`` (``None``: none)."""
        return None if acc is None else {"prior": (acc / max(n, 1)).tolist()}

    def baseline_prediction(self, stats: dict, n: int):
        """What the baseline predicts for ``n`` rows (probabilities or values)."""
        import torch

        return torch.tensor(stats["prior"]).expand(n, -1).clone()

    def baseline_metrics(self, model, name: str, stats: dict, x: dict, y: dict, names: list[str],
                         threshold) -> dict:
        """Metrics of the baseline on labelled rows (``{}`` without their targets)."""
        from .metrics import classification_metrics

        if name not in y:
            return {}
        n = len(next(iter(x.values())))
        return classification_metrics(self.decides_as, self.baseline_prediction(stats, n), y[name], names, threshold)

    # --- export ----------------------------------------------------------------------------
    def export_activation(self, cfg, shape, activation: str | None) -> str | None:
        """The activation a runtime applies to the exported output: the head's ``activation`` on
        logits, a sigmoid on a score trained with binary cross-entropy, else none (values,
        probabilities a soft vote already averaged)."""
        from .shapes import LOGITS, SCORE

        if shape.kind == LOGITS:
            return activation
        if shape.kind == SCORE:
            return "sigmoid" if getattr(getattr(cfg, "loss", None), "type", None) == "binary_cross_entropy" else None
        return None


def _array(x):
    """A numpy array of a CPU tensor or an array (predict's columns are numpy either way)."""
    return x.numpy() if hasattr(x, "numpy") else x


def _names_or_indices(names, width: int) -> list:
    return names or [str(i) for i in range(width)]


@register_prediction_kind
class Multiclass(PredictionKind):
    """One of C classes. Baseline: the training class frequencies (so the majority class)."""

    name = "multiclass"
    decides_as = "multiclass"
    meaning = "one score per class (logits: softmax gives the probabilities); the label is the most probable class"

    def columns(self, name, out, probs, labels, label_names):
        names = _names_or_indices(label_names, probs.shape[1])
        cols = {name: [names[i] for i in labels.tolist()]}
        for j, label in enumerate(names):
            cols[f"{name}.prob.{label}"] = _array(probs[:, j])
        return cols

    def baseline_update(self, model, name, acc, x, y):
        import torch

        if name not in y:
            return acc
        part = torch.bincount(y[name].long(), minlength=model.shapes[name].dims[0]).double()
        return part if acc is None else acc + part


@register_prediction_kind
class Multilabel(PredictionKind):
    """Any subset of L labels. Baseline: every label's training frequency as its probability."""

    name = "multilabel"
    decides_as = "multilabel"
    meaning = "one score per label (logits: sigmoid gives each probability); labels above `threshold`"

    def columns(self, name, out, probs, labels, label_names):
        names = _names_or_indices(label_names, probs.shape[1])
        cols = {name: ["|".join(n for n, on in zip(names, row) if on) for row in labels.tolist()]}
        for j, label in enumerate(names):
            cols[f"{name}.prob.{label}"] = _array(probs[:, j])
        return cols


@register_prediction_kind
class Binary(PredictionKind):
    """Yes/no. Baseline: the training rate of yes as the probability."""

    name = "binary"
    meaning = "one score per row (a logit: sigmoid gives the probability of yes); yes above `threshold`"

    def columns(self, name, out, probs, labels, label_names):
        return {name: _array(labels), f"{name}.prob": _array(probs)}

    def shown(self, name, pred, text):
        return f"{pred[name]}  prob {pred[f'{name}.prob']:.4f}"

    def baseline_prediction(self, stats, n):
        import torch

        return torch.tensor(stats["prior"]).expand(n).clone()


@register_prediction_kind
class Regression(PredictionKind):
    """Real values. Baseline: the training mean."""

    name = "regression"
    meaning = "the predicted values, as they are"

    def probabilities(self, out, activation):
        return out

    def decide(self, probs, threshold=None):
        return None

    def columns(self, name, out, probs, labels, label_names):
        width = out.shape[1]
        return {name if width == 1 else f"{name}.{j}": _array(out[:, j]) for j in range(width)}

    def metrics(self, model, name, outputs, targets, names, threshold):
        from .metrics import regression_metrics

        return regression_metrics(outputs[name], targets[name], names) if name in targets else {}

    def baseline_update(self, model, name, acc, x, y):
        if name not in y:
            return acc
        part = y[name].double().sum(0)
        return part if acc is None else acc + part

    def baseline_stats(self, model, name, acc, n):
        return None if acc is None else {"mean": (acc / max(n, 1)).tolist()}

    def baseline_metrics(self, model, name, stats, x, y, names, threshold):
        import torch

        from .metrics import regression_metrics

        if name not in y:
            return {}
        n = len(next(iter(x.values())))
        return regression_metrics(torch.tensor(stats["mean"]).expand(n, -1), y[name], names)


@register_prediction_kind
class Similarity(PredictionKind):
    """A query-candidate score of two towers. Baseline: the training match rate (labelled pairs), or
    candidates ranked by how often they appear in the training pairs (popularity, contrastive)."""

    name = "similarity"
    meaning = ("the similarity score of a query and a candidate (sigmoid gives the match probability "
               "when trained with binary cross-entropy); towers are exported on their own for retrieval")

    def columns(self, name, out, probs, labels, label_names):
        return {f"{name}.score": _array(out), f"{name}.prob": _array(probs)}

    def shown(self, name, pred, text):
        return f"score {pred[f'{name}.score']:.4f}  prob {pred[f'{name}.prob']:.4f}"

    def metrics(self, model, name, outputs, targets, names, threshold):
        from .metrics import classification_metrics, recall_at_k, recall_ks
        from .outputs import to_probabilities

        result = {}
        ks = recall_ks(names)
        if ks:
            pair = model.node_module(name).pairwise(outputs[name + ".query"], outputs[name + ".candidate"])
            result.update(recall_at_k(pair, ks))
        rest = [m for m in names if not m.startswith("recall@")]
        if rest and name in targets:
            result.update(classification_metrics("binary", to_probabilities(model, name, outputs[name]),
                                                 targets[name], rest))
        return result

    def baseline_inputs(self, model, name):
        return model.input_keys([model.similarity[name][1]]) if name in model.similarity else []

    def baseline_update(self, model, name, acc, x, y):
        if name in y:
            return super().baseline_update(model, name, acc, x, y)
        if name not in model.similarity:
            return acc
        from .baselines import _row_keys

        keys = model.input_keys([model.similarity[name][1]])
        acc = acc if acc is not None else {"popularity": {}, "keys": keys}
        pop = acc["popularity"]
        for k in _row_keys(x, keys):
            pop[k] = pop.get(k, 0) + 1
        return acc

    def baseline_stats(self, model, name, acc, n):
        if acc is None or isinstance(acc, dict):
            return acc
        return {"rate": float((acc / max(n, 1))[0])}

    def baseline_metrics(self, model, name, stats, x, y, names, threshold):
        import torch

        from .baselines import _row_keys
        from .metrics import classification_metrics, recall_at_k, recall_ks

        n = len(next(iter(x.values())))
        if "popularity" in stats:
            keys = _row_keys(x, stats["keys"])
            pop = torch.tensor([float(stats["popularity"].get(k, 0)) for k in keys])
            # ties (e.g. items never seen in training) are broken at random, with a fixed seed
            noise = torch.rand(n, n, generator=torch.Generator().manual_seed(0)) * 1e-3
            return recall_at_k(pop.unsqueeze(0).expand(n, n) + noise, recall_ks(names))
        rest = [m for m in names if not m.startswith("recall@")]
        return classification_metrics("binary", torch.full((n,), stats["rate"]), y[name], rest)
