"""A gradient-boosted head: LightGBM trees over tabular inputs, fitted before the neural part (torch-free)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from ..registry import register_config
from ..shapes import FEATURES, INDEX, LOGITS, VALUES, Shape
from .base import Name, Node, PositiveFloat, PositiveInt, Probability
from .heads import Classes, _check_unique, _default_loss, _names, _no_default
from .losses import LossConfig

_DEFAULT_LOSS = {"multiclass": "cross_entropy", "multilabel": "binary_cross_entropy",
                 "binary": "binary_cross_entropy", "regression": "mse"}
_DEFAULT_METRICS = {"multiclass": ("accuracy",), "multilabel": ("binary_accuracy",), "binary": ("accuracy",),
                    "regression": ("mae", "rmse")}
_ALLOWED_LOSSES = {"multiclass": ("cross_entropy",), "multilabel": ("binary_cross_entropy",),
                   "binary": ("binary_cross_entropy",), "regression": ("mse", "huber")}


class _ByTask:
    """A head attribute that depends on the instance's `task` (the class itself gives a summary)."""

    def __init__(self, by_task: dict, on_class):
        self.by_task, self.on_class = by_task, on_class

    def __get__(self, obj, owner=None):
        return self.on_class if obj is None else self.by_task[obj.task]


@register_config("head", "gbdt")
class GBDTHeadConfig(Node):
    """Gradient-boosted trees (LightGBM) over tabular inputs (`numeric`, `categorical`, `vector`).

    Fitted once, before the neural part, on the same training split, with early stopping on the
    validation split; no gradient flows through it (in a late fusion it is an `independent`
    member). Its output is the trees' raw score: logits for classification, values for regression.
    Saved as LightGBM text models in the run directory (`gbdt/<head>.txt`, one per label for
    multilabel / per output for regression); needs the `gbdt` extra (`pip install archspec[gbdt]`).
    """

    section = "heads"
    accepts = frozenset({FEATURES, INDEX})
    # what the rules read from every head; a GBDT head has no dense layers of its own
    layers: ClassVar[list] = []
    activation: ClassVar[str] = "none"

    type: Literal["gbdt"]
    inputs: Annotated[list[Name], Field(min_length=1)]
    """The tabular input nodes the trees read (`numeric`, `categorical` or `vector` inputs);
    categorical inputs are split on natively."""
    task: Literal["multiclass", "multilabel", "binary", "regression"]
    """What the trees predict (as the neural head types of the same names)."""
    classes: Classes | None = None
    """Multiclass: number of classes, or their names."""
    labels: Classes | None = None
    """Multilabel: number of labels, or their names (one model per label)."""
    outputs: PositiveInt = 1
    """Regression: values per example (one model per value)."""
    threshold: Probability = 0.5
    """Binary / multilabel: probability above which the positive class is predicted."""
    separator: Annotated[str, Field(min_length=1, max_length=8)] | None = None
    """Multilabel: how a data cell separates its labels when it is not a JSON list (as for
    `multilabel` heads); left out, a cell is split on any of `|`, `,` and `;`."""
    trees: Annotated[int, Field(gt=0, le=100_000, strict=True)] = 200
    """Maximum boosting rounds (trees per model; fewer with early stopping)."""
    num_leaves: Annotated[int, Field(ge=2, le=131_072, strict=True)] = 31
    """Maximum leaves per tree."""
    max_depth: PositiveInt | None = None
    """Maximum depth per tree (none: limited by `num_leaves` only)."""
    learning_rate: PositiveFloat = 0.1
    """Shrinkage applied to each tree."""
    min_child_samples: PositiveInt = 20
    """Minimum training rows in a leaf."""
    early_stopping: Annotated[int, Field(ge=0, strict=True)] = 20
    """Stop adding trees when the validation loss has not improved for this many rounds
    (0: never stop early; without a validation split all `trees` are grown)."""
    seed: int | None = None
    """Seed of the trees (defaults to `training.seed`)."""
    target: Name | None = None
    """Data column with this head's labels; defaults to the head's name."""
    loss: LossConfig = Field(None, json_schema_extra=_no_default)
    """Loss reported for this head on the validation split (it does not train the trees; defaults to
    the natural loss of `task`)."""
    metrics: list[Annotated[str, Field(min_length=1, max_length=32)]] | None = None
    """Metrics reported for this head (defaults depend on `task`)."""

    @model_validator(mode="before")
    @classmethod
    def _fill_loss(cls, data: Any):
        if isinstance(data, dict) and isinstance(data.get("task"), str) and data["task"] in _DEFAULT_LOSS:
            data = _default_loss(data, _DEFAULT_LOSS[data["task"]])
        return data

    @field_validator("classes", "labels")
    @classmethod
    def _unique(cls, v):
        _check_unique(v, "classes")
        return v

    @model_validator(mode="after")
    def _sizes(self):
        if self.task == "multiclass":
            if self.classes is None:
                raise ValueError("a multiclass gbdt head needs `classes` (a number or the class names)")
            if _names(self.classes)[0] < 2:
                raise ValueError("a multiclass head needs at least 2 classes — for yes/no use `task: binary`")
        elif self.classes is not None:
            raise ValueError(f"`classes` is for `task: multiclass`, not {self.task}")
        if self.task == "multilabel" and self.labels is None:
            raise ValueError("a multilabel gbdt head needs `labels` (a number or the label names)")
        if self.task != "multilabel" and self.labels is not None:
            raise ValueError(f"`labels` is for `task: multilabel`, not {self.task}")
        return self

    # --- what every head offers the graph, the checks and the compiler ----------------------------
    kind: ClassVar = _ByTask({t: t for t in _DEFAULT_LOSS}, tuple(_DEFAULT_LOSS))  # on the class: every kind it can take
    default_loss: ClassVar = _ByTask(_DEFAULT_LOSS, "by task")
    output_activation: ClassVar = _ByTask({"multiclass": "softmax", "multilabel": "sigmoid", "binary": "sigmoid",
                                           "regression": None}, None)
    allowed_losses: ClassVar = _ByTask(_ALLOWED_LOSSES, ("cross_entropy", "binary_cross_entropy", "mse", "huber"))

    @property
    def decision_threshold(self) -> float | None:
        return self.threshold if self.task in ("binary", "multilabel") else None

    @property
    def target_column(self) -> str:
        return self.target or ""

    def references(self):
        return [(("inputs", i), n) for i, n in enumerate(self.inputs)]

    def resolved_metrics(self) -> list[str]:
        return list(self.metrics) if self.metrics is not None else list(_DEFAULT_METRICS[self.task])

    def label_space(self):
        if self.task == "multiclass":
            return ("multiclass",) + _names(self.classes)
        if self.task == "multilabel":
            return ("multilabel",) + _names(self.labels)
        if self.task == "binary":
            return ("binary", 1, None)
        return None

    def models(self) -> int:
        """Boosters fitted: one per label (multilabel) or per output (regression), else one."""
        return {"multilabel": self.label_space()[1] if self.labels is not None else 1,
                "regression": self.outputs}.get(self.task, 1)

    def static_params(self, in_shapes) -> int:
        """No torch parameters: the trees are not counted as parameters (``build`` shows their count)."""
        return 0

    def infer(self, ins, ctx) -> Shape:
        for (rel, ref), shape in zip(self.references(), ins):
            src, section = ctx.graph.nodes.get(ref), ctx.graph.section.get(ref)
            if section is not None and section != "inputs":
                ctx.report("E-MODALITY", rel, f"a gbdt head reads tabular inputs, but '{ref}' is {section[:-1]} "
                           f"'{getattr(src, 'type', '?')}' (trees are fitted before the neural part, so they "
                           "cannot read what it learns)", "list `numeric`, `categorical` or `vector` inputs")
        if self.task == "binary":
            return Shape(LOGITS, ())
        if self.task == "regression":
            return Shape(VALUES, (self.outputs,))
        return Shape(LOGITS, (self.label_space()[1],))
