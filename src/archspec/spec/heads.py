"""Heads: predictions with a loss and metrics. Each reads one feature node (or two, for similarity)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from ..errors import WARNING
from ..registry import register_config
from ..shapes import FEATURES, LOGITS, SCORE, VALUES, Shape
from .base import Layers, Name, Node, PositiveFloat, PositiveInt, Probability
from .losses import LossConfig

Classes = PositiveInt | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


def _default_loss(data: Any, default: str) -> Any:
    """Fill in the head's natural loss (weight 1) when `loss` is left out."""
    if isinstance(data, dict) and data.get("loss") is None:
        data = {**data, "loss": {"type": default}}
    return data


def _no_default(schema: dict) -> None:
    schema.pop("default", None)


class HeadNode(Node, Layers):
    section = "heads"
    kind: ClassVar[str] = ""
    #: what turns the output layer into probabilities at prediction time (``None``: values as they are)
    output_activation: ClassVar[str | None] = None
    default_loss: ClassVar[str] = ""
    default_metrics: ClassVar[tuple] = ()
    accepts = frozenset({FEATURES})

    target: Name | None = None
    """Data column with this head's labels; defaults to the head's name."""
    loss: LossConfig = Field(None, json_schema_extra=_no_default)
    """This head's loss and its weight (`type` is required when given); left out, the head gets the
    natural loss of its type with weight 1."""
    metrics: list[Annotated[str, Field(min_length=1, max_length=32)]] | None = None
    """Metrics reported for this head on the validation split (defaults depend on the head type)."""
    layers: list[PositiveInt] = []
    """Hidden dense layers of this head before its output layer (partially shared layers)."""

    @model_validator(mode="before")
    @classmethod
    def _fill_loss(cls, data):
        return _default_loss(data, cls.default_loss)

    @property
    def decision_threshold(self) -> float | None:
        """Probability above which a label is predicted (multilabel, binary), else ``None``."""
        return getattr(self, "threshold", None)

    def resolved_metrics(self) -> list[str]:
        return list(self.metrics) if self.metrics is not None else list(self.default_metrics)

    def label_space(self):
        """``(kind, size, names)`` that late fusion members must share, or ``None``."""
        return None


class ClassifierHead(HeadNode):
    from_: Name = Field(alias="from")
    """The feature node this head reads (an input, encoder or early fusion)."""

    def references(self):
        return [(("from",), self.from_)]


def _names(classes) -> tuple[int, list | None]:
    if isinstance(classes, list):
        return len(classes), list(classes)
    return classes, None


def _check_unique(values, what):
    if isinstance(values, list):
        dup = sorted({c for c in values if values.count(c) > 1})
        if dup:
            raise ValueError(f"{what} listed twice: {', '.join(dup)} — list each name once")


@register_config("head", "multiclass")
class MulticlassHeadConfig(ClassifierHead):
    """One of C classes: a dense layer to C logits; softmax at prediction time."""

    type: Literal["multiclass"]
    classes: Classes
    """Number of classes, or their names (label values in the data)."""
    kind = "multiclass"
    output_activation = "softmax"
    default_loss = "cross_entropy"
    default_metrics = ("accuracy",)

    @field_validator("classes")
    @classmethod
    def _check(cls, classes):
        _check_unique(classes, "classes")
        if _names(classes)[0] < 2:
            raise ValueError("a multiclass head needs at least 2 classes — for a yes/no prediction "
                             "use `type: binary`")
        return classes

    def label_space(self):
        return ("multiclass",) + _names(self.classes)

    def infer(self, ins, ctx) -> Shape:
        return Shape(LOGITS, (_names(self.classes)[0],))


@register_config("head", "multilabel")
class MultilabelHeadConfig(ClassifierHead):
    """Any subset of L labels: a dense layer to L logits; sigmoid per label at prediction time."""

    type: Literal["multilabel"]
    labels: Classes
    """Number of labels, or their names."""
    threshold: Probability = 0.5
    """Probability above which a label is predicted."""
    separator: Annotated[str, Field(min_length=1, max_length=8)] | None = None
    """How a data cell separates its labels when it is not a JSON list: e.g. `"|"`, or `" "` for
    labels separated by spaces (a blank separator splits on any run of whitespace). Left out, a
    cell is split on any of `|`, `,` and `;`."""
    kind = "multilabel"
    output_activation = "sigmoid"
    default_loss = "binary_cross_entropy"
    default_metrics = ("binary_accuracy",)

    @field_validator("labels")
    @classmethod
    def _check(cls, labels):
        _check_unique(labels, "labels")
        return labels

    def label_space(self):
        return ("multilabel",) + _names(self.labels)

    def infer(self, ins, ctx) -> Shape:
        return Shape(LOGITS, (_names(self.labels)[0],))


@register_config("head", "binary")
class BinaryHeadConfig(ClassifierHead):
    """A yes/no prediction: one logit; sigmoid at prediction time."""

    type: Literal["binary"]
    threshold: Probability = 0.5
    """Probability above which the positive class is predicted."""
    kind = "binary"
    output_activation = "sigmoid"
    default_loss = "binary_cross_entropy"
    default_metrics = ("accuracy",)

    def label_space(self):
        return ("binary", 1, None)

    def infer(self, ins, ctx) -> Shape:
        return Shape(LOGITS, ())


@register_config("head", "regression")
class RegressionHeadConfig(ClassifierHead):
    """Real-valued outputs: a dense layer to `outputs` values."""

    type: Literal["regression"]
    outputs: PositiveInt = 1
    """Number of values predicted per example."""
    kind = "regression"
    default_loss = "mse"
    default_metrics = ("mae", "rmse")

    def infer(self, ins, ctx) -> Shape:
        return Shape(VALUES, (self.outputs,))


@register_config("head", "similarity")
class SimilarityHeadConfig(HeadNode):
    """Two towers joined by a similarity: score = sim(query, candidate) (optionally scaled)."""

    type: Literal["similarity"]
    query: Name
    """The query tower's output node (e.g. the user tower)."""
    candidate: Name
    """The candidate tower's output node (e.g. the item tower); exported on its own for precomputing."""
    metric: Literal["dot", "cosine", "euclidean"] = "dot"
    """`dot` product, `cosine` similarity (in [-1, 1]) or negative `euclidean` distance (≤ 0)."""
    temperature: PositiveFloat | None = None
    """Divide the score by this before the loss (e.g. 0.05 for cosine)."""
    learn_scale: bool = False
    """Learn a scale and a bias applied to the score before the loss (starts at 1 and 0)."""
    kind = "similarity"
    output_activation = "sigmoid"
    default_loss = "binary_cross_entropy"
    default_metrics = ("accuracy",)

    def references(self):
        return [(("query",), self.query), (("candidate",), self.candidate)]

    def resolved_metrics(self) -> list[str]:
        if self.metrics is not None:
            return list(self.metrics)
        return ["recall@10"] if self.loss.type == "contrastive" else ["accuracy", "auc"]

    def infer(self, ins, ctx) -> Shape:
        q, c = ins
        if q.width is not None and c.width is not None and q.width != c.width:
            ctx.report("E-SHAPE", ("candidate",), f"the towers give different widths: query {q.width}, "
                       f"candidate {c.width}", "make both towers end in the same width")
        if self.layers:
            ctx.report("E-SCHEMA-VALUE", ("layers",), "a similarity head has no layers of its own",
                       "add the layers to the towers")
        if self.loss.type == "contrastive" and self.temperature is not None and (
                self.loss.temperature is not None or self.loss.learn_temperature):
            ctx.report("W-SIM-TEMPERATURE", ("loss", "temperature"), "both the head's `temperature` and the "
                       "contrastive loss's temperature divide the score in the loss",
                       "keep one: the head's (fixed, part of the score) or the loss's (fixed or learned)",
                       severity=WARNING)
        rng = {"cosine": (-1.0, 1.0), "euclidean": (float("-inf"), 0.0)}.get(self.metric)
        if rng and self.temperature is None and not self.learn_scale and self.loss.type == "binary_cross_entropy":
            top = "0.73" if self.metric == "cosine" else "0.5"
            ctx.report("W-SIM-BCE", ("metric",), f"a raw {self.metric} score lies in [{rng[0]}, {rng[1]}]: used as "
                       f"the logit of binary cross-entropy, the predicted probability can never exceed {top}",
                       "set `temperature` (e.g. 0.05) or `learn_scale: true`", severity=WARNING)
        return Shape(SCORE, (), range=rng)
