"""Losses attached to heads (and to late fusions). The total loss is the weighted sum."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from ..registry import register_config
from .base import NonNegFloat, NonNegInt, PositiveFloat, Probability, RegistryUnion, StrictModel


class LossBase(StrictModel):
    #: prediction kinds (head `kind`s) this loss applies to; a plugin loss states its own
    applies_to: ClassVar[tuple] = ()

    weight: NonNegFloat = 1.0
    """Weight of this loss in the total (Keras `loss_weights`)."""


def losses_for(kind: str) -> tuple:
    """Registered losses a head of prediction ``kind`` may use, in registration order."""
    from ..registry import REGISTRIES

    return tuple(n for n, c in REGISTRIES["loss"].configs.items() if kind in getattr(c, "applies_to", ()))


@register_config("loss", "cross_entropy")
class CrossEntropyLossConfig(LossBase):
    """Softmax cross-entropy on logits (multiclass)."""

    type: Literal["cross_entropy"]
    applies_to = ("multiclass",)
    label_smoothing: Probability = 0.0
    """Mass spread uniformly over the classes (0 = none)."""
    class_weights: Annotated[list[NonNegFloat], Field(min_length=2)] | None = None
    """One weight per class, for imbalanced classes."""


@register_config("loss", "nll")
class NLLLossConfig(LossBase):
    """Negative log-likelihood of probabilities (for late fusions that average probabilities)."""

    type: Literal["nll"]


@register_config("loss", "binary_cross_entropy")
class BinaryCrossEntropyLossConfig(LossBase):
    """Binary cross-entropy per label (multi-label, binary, labelled pairs); on logits when the node gives logits."""

    type: Literal["binary_cross_entropy"]
    applies_to = ("multilabel", "binary", "similarity")
    pos_weight: PositiveFloat | Annotated[list[PositiveFloat], Field(min_length=1)] | None = None
    """Weight of positive examples (one number, or one per label)."""


@register_config("loss", "mse")
class MSELossConfig(LossBase):
    """Mean squared error (regression)."""

    type: Literal["mse"]
    applies_to = ("regression",)


@register_config("loss", "huber")
class HuberLossConfig(LossBase):
    """Huber loss (regression, robust to outliers)."""

    type: Literal["huber"]
    applies_to = ("regression",)
    delta: PositiveFloat = 1.0
    """Where the loss turns from quadratic to linear."""


@register_config("loss", "contrastive")
class ContrastiveLossConfig(LossBase):
    """In-batch softmax (InfoNCE) for two towers: each query's positive is its own row's candidate,
    every other candidate in the batch is a negative; duplicates of the positive are masked."""

    type: Literal["contrastive"]
    applies_to = ("similarity",)
    symmetric: bool = False
    """Also score candidates against queries and average the two directions (CLIP style)."""
    logq_correction: bool = False
    """Correct the sampling bias of in-batch negatives (Yi et al., RecSys 2019): subtract from each
    candidate's logit the log of how often it is expected among the negatives (its frequency in the
    training split, fitted at the start of training), so popular items are not over-penalised."""
    random_negatives: NonNegInt = 0
    """Candidates drawn uniformly at random from the training split's distinct candidates at every
    step and added as negatives for every row (mixed negative sampling); 0 = in-batch only."""
    temperature: PositiveFloat | None = None
    """The loss divides the head's score by this (on top of the head's own `temperature`); left out,
    the score is used as it is, or, with `learn_temperature`, learning starts at 1."""
    learn_temperature: bool = False
    """Learn the loss temperature (as CLIP's logit scale: starts at `temperature`, never below 0.01).
    It sharpens the softmax only: rankings, predictions and exports do not change with it."""
    mask_accidental_hits: bool = True
    """Do not count a negative that is the row's own candidate (the same item twice in a batch, or
    drawn as a random negative) as a negative."""


LossConfig = Annotated[object, RegistryUnion("loss")]
"""Any registered loss, chosen by its `type` (built from the registry: plugins add to it)."""
