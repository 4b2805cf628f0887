"""Fusions. `early` = feature level (concatenate features); `late` = decision level (combine head predictions)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from ..errors import did_you_mean
from ..registry import register_config
from ..shapes import FEATURES, LOGITS, PROBS, Shape
from .base import Layers, Name, Node, NonNegFloat, PositiveInt, Probability
from .losses import LossConfig


class FusionNode(Node):
    section = "fusions"

    inputs: Annotated[list[Name], Field(min_length=2)]
    """The nodes fused, at least two."""

    def references(self):
        return [(("inputs", i), n) for i, n in enumerate(self.inputs)]


@register_config("fusion", "early")
class EarlyFusionConfig(FusionNode, Layers):
    """Feature-level fusion: optional per-branch projection and normalisation, concatenation, dense layers."""

    type: Literal["early"]
    project: PositiveInt | dict[Name, PositiveInt] | None = None
    """Project each branch to this width first (one number for all, or per branch name) so no
    modality dominates by width."""
    branch_norm: Literal["none", "layer_norm", "batch_norm", "l2"] = "none"
    """Normalise each branch (after projection) so features on different scales become comparable."""
    accepts = frozenset({FEATURES})

    def branch_widths(self, ins: list[Shape]) -> list:
        out = []
        for name, s in zip(self.inputs, ins):
            p = self.project.get(name) if isinstance(self.project, dict) else self.project
            out.append(p if p is not None else s.width)
        return out

    def infer(self, ins, ctx) -> Shape:
        if isinstance(self.project, dict):
            for name in self.project:
                if name not in self.inputs:
                    near = did_you_mean(name, self.inputs)
                    ctx.report("E-REF", ("project", name), f"'{name}' is not one of this fusion's inputs "
                               f"({', '.join(self.inputs)})", near or "project only the fused branches")
        if len(set(self.inputs)) != len(self.inputs):
            ctx.report("E-SCHEMA-VALUE", ("inputs",), "a branch is listed twice", "list each branch once")
        if self.layers:
            return Shape(FEATURES, (self.layers[-1],))
        widths = self.branch_widths(ins)
        return Shape(FEATURES, (None if None in widths else sum(widths),))


@register_config("fusion", "late")
class LateFusionConfig(FusionNode):
    """Decision-level fusion: combines the predictions of heads (or other late fusions) that share a label space."""

    type: Literal["late"]
    combine: Literal["weighted_average", "logit_average", "soft_vote", "hard_vote", "learned"] = "weighted_average"
    """`weighted_average` of probabilities; `logit_average` (weighted) of logits; `soft_vote`
    (uniform average of probabilities); `hard_vote` (weighted majority of predicted labels, not
    differentiable); `learned` (softmax-normalised weights learned on the fused loss)."""
    weights: Annotated[list[NonNegFloat], Field(min_length=2)] | None = None
    """One weight per input, summing to 1 (e.g. `[0.6, 0.4]`); default uniform."""
    training: Literal["joint", "independent"] = "joint"
    """`joint`: the fused loss trains the members too. `independent`: members learn only from
    their own losses (gradients of the fused loss stop at the members)."""
    target: Name | None = None
    """Label column of the fused prediction; defaults to the members' common target."""
    loss: LossConfig | None = None
    """Loss on the fused prediction (none by default: it is then only evaluated)."""
    metrics: list[Annotated[str, Field(min_length=1, max_length=32)]] | None = None
    """Metrics of the fused prediction; defaults to those of the first member."""
    threshold: Probability | None = None
    """For multilabel and binary members: probability above which the fused prediction predicts a
    label (in metrics, `predict` and `hard_vote` alike); defaults to the first member's `threshold`."""
    accepts = frozenset({LOGITS, PROBS})
    kind: ClassVar[str] = "late"

    @property
    def output_kind(self) -> str:
        return LOGITS if self.combine == "logit_average" else PROBS

    def infer(self, ins, ctx) -> Shape:
        w = self.weights
        if w is not None:
            if len(w) != len(self.inputs):
                ctx.report("E-LATE-WEIGHTS", ("weights",), f"{len(w)} weights for {len(self.inputs)} inputs",
                           "give one weight per input, in the same order")
            elif self.combine in ("soft_vote", "learned"):
                ctx.report("E-LATE-WEIGHTS", ("weights",), f"`{self.combine}` does not take fixed weights",
                           "use `combine: weighted_average` for fixed weights, or drop `weights`")
            elif abs(sum(w) - 1.0) > 1e-6:
                what = ("the fused logits would be rescaled" if self.combine == "logit_average"
                        else "the fused probabilities would not sum to 1")
                ctx.report("E-LATE-WEIGHTS", ("weights",), f"weights sum to {sum(w):g}, not 1: {what}",
                           "rescale them to sum to 1")
        if self.combine == "hard_vote" and self.loss is not None:
            ctx.report("E-LATE-LOSS", ("loss",), "a hard vote is not differentiable and cannot be trained",
                       "remove `loss`, or use `weighted_average` / `soft_vote`")
        if self.combine == "learned" and self.loss is None:
            ctx.report("E-LATE-LOSS", ("combine",), "learned weights need a loss on the fused prediction",
                       "add `loss:` (e.g. `{type: nll}`)")
        if self.training == "independent" and self.combine != "learned" and self.loss is not None:
            ctx.report("E-LATE-LOSS", ("loss",), "with `training: independent` and fixed weights the fused loss "
                       "has nothing to train", "remove `loss`, or use `training: joint` / `combine: learned`")
        dims = next((s.dims for s in ins if s is not None), ())
        return Shape(self.output_kind, dims)

    def resolved_metrics(self) -> list[str]:
        return list(self.metrics) if self.metrics is not None else []
