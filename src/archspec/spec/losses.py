"""Losses attached to heads (and to late fusions). The total loss is the weighted sum."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from ..registry import register_config
from .base import NonNegFloat, PositiveFloat, Probability, RegistryUnion, StrictModel


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


LossConfig = Annotated[object, RegistryUnion("loss")]
"""Any registered loss, chosen by its `type` (built from the registry: plugins add to it)."""
