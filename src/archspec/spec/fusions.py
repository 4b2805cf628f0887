"""Fusions. `early` = feature level (concatenate features); `late` = decision level (combine head predictions)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from ..errors import WARNING, did_you_mean
from ..registry import register_config
from ..shapes import FEATURES, LOGITS, PROBS, SEQUENCE, TASKS, Shape
from .base import Activation, Layers, Name, Node, NonNegFloat, PositiveInt, Probability
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


TaskName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", min_length=1, max_length=64)]


@register_config("fusion", "mmoe")
class MMoEFusionConfig(Node):
    """Multi-gate mixture of experts (MMoE, Ma et al., KDD 2018): expert MLPs over the (concatenated)
    inputs and one softmax gate per task, each task reading its own mixture of the experts. With
    `task_experts` it becomes PLE (Tang et al., RecSys 2020): each task also has experts of its own
    (a gate mixes those with the shared ones), stacked over `levels`. A head reads one task's
    output with a dotted reference: `from: NODE.TASK`."""

    section = "fusions"
    type: Literal["mmoe"]
    inputs: Annotated[list[Name], Field(min_length=1)]
    """The nodes read (feature vectors, concatenated): usually one shared encoder or early fusion."""
    tasks: Annotated[list[TaskName], Field(min_length=2)]
    """Names of the task outputs, e.g. `[genres, reception]`; heads read them as `NODE.TASK`."""
    experts: PositiveInt = 4
    """Experts shared by every task (per level)."""
    task_experts: Annotated[int, Field(ge=0, strict=True)] = 0
    """Experts of each task's own (per level); > 0 is PLE's customised gate control."""
    levels: Annotated[int, Field(gt=0, le=8, strict=True)] = 1
    """Extraction levels (PLE); above the first, each level reads the previous level's task and
    shared mixtures."""
    expert_layers: Annotated[list[PositiveInt], Field(min_length=1)] = [64]
    """Widths of each expert's dense layers; the last is the width of every task output."""
    activation: Activation = "relu"
    """Activation after each expert layer."""
    dropout: Probability = 0.0
    """Dropout after each expert layer's activation."""
    accepts = frozenset({FEATURES})

    @field_validator("tasks", "inputs")
    @classmethod
    def _unique(cls, names, info):
        dup = sorted({t for t in names if names.count(t) > 1})
        if dup:
            raise ValueError(f"{', '.join(repr(d) for d in dup)} listed twice in `{info.field_name}` — list each once")
        return names

    @property
    def task_outputs(self) -> tuple:
        return tuple(self.tasks)

    def references(self):
        return [(("inputs", i), n) for i, n in enumerate(self.inputs)]

    def infer(self, ins, ctx) -> Shape:
        if self.levels > 1 and self.task_experts == 0:
            ctx.report("W-MMOE-LEVELS", ("levels",), f"{self.levels} levels without task experts stack "
                       "identical mixtures: PLE's levels separate task-specific from shared experts",
                       "set `task_experts` (e.g. 1), or `levels: 1`", severity=WARNING)
        return Shape(TASKS, (len(self.tasks), self.expert_layers[-1]))

    def static_params(self, in_shapes) -> int | None:
        """Parameters, from the input widths alone (None when one is deferred)."""
        widths = [s.width for s in in_shapes]
        if None in widths:
            return None
        width, total, k = sum(widths), 0, len(self.tasks)
        for level in range(self.levels):
            expert, w = 0, width
            for out in self.expert_layers:
                expert, w = expert + w * out + out, out
            total += (self.experts + k * self.task_experts) * expert
            total += k * width * (self.task_experts + self.experts)  # task gates (no bias)
            if level < self.levels - 1:
                total += width * (k * self.task_experts + self.experts)  # PLE's shared gate
            width = self.expert_layers[-1]
        return total


@register_config("fusion", "cross_attention")
class CrossAttentionFusionConfig(Node):
    """Cross-attention between two sequences (as in joint vision-language models): each position of
    the `query` sequence attends to the `context` sequence (multi-head attention, residual + layer
    norm, optional feed-forward), over `layers` layers; padded positions are masked. The result is
    pooled over the query's positions (and, `bidirectional`, the context's, concatenated)."""

    section = "fusions"
    type: Literal["cross_attention"]
    query: Name
    """The sequence that attends (e.g. text tokens from a `transformer` with `pooling: none`)."""
    context: Name
    """The sequence attended to (e.g. image patches from a `cnn` with `global_pool: none`)."""
    heads: Annotated[int, Field(gt=0, le=64, strict=True)] = 4
    """Attention heads; the attending width must be divisible by it."""
    layers: Annotated[int, Field(gt=0, le=24, strict=True)] = 1
    """Stacked cross-attention layers."""
    dim: PositiveInt | None = None
    """Project both sequences to this width first (a linear layer each); default: keep their widths."""
    feedforward: PositiveInt | None = None
    """Hidden width of a position-wise feed-forward block (GELU) after each attention, with its own
    residual + norm; default: none."""
    dropout: Probability = 0.0
    """Dropout on the attention weights and on each residual branch."""
    bidirectional: bool = False
    """Also let the context attend to the query (co-attention, both updated per layer); the two
    pooled vectors are concatenated."""
    pooling: Literal["mean", "max", "first"] = "mean"
    """Sequence to vector over the unpadded positions: masked mean, masked max, or the first position."""
    accepts = frozenset({SEQUENCE})

    def references(self):
        return [(("query",), self.query), (("context",), self.context)]

    def widths(self, ins) -> tuple:
        q, c = ins
        return (self.dim or q.width, self.dim or c.width)

    def infer(self, ins, ctx) -> Shape:
        dq, dc = self.widths(ins)
        streams = [("query", dq)] + ([("context", dc)] if self.bidirectional else [])
        for which, width in streams:
            if width is not None and width % self.heads:
                near = [h for h in range(self.heads, 0, -1) if width % h == 0][0]
                ctx.report("E-SHAPE", ("heads",), f"the {which} width {width} is not divisible by {self.heads} "
                           "attention heads", f"use `heads: {near}`, or set `dim` to a multiple of {self.heads}")
        if None in (dq, dc) and self.bidirectional:
            return Shape(FEATURES, (None,))
        return Shape(FEATURES, (dq + dc if self.bidirectional else dq,))

    def static_params(self, in_shapes) -> int | None:
        """Parameters, from the input widths alone (None when one is deferred)."""
        wq, wc = in_shapes[0].width, in_shapes[1].width
        if wq is None or wc is None:
            return None
        dq, dc = self.widths(in_shapes)
        total = (wq * dq + dq + wc * dc + dc) if self.dim else 0

        def block(d, kd):
            attn = (3 * d * d if kd == d else d * d + 2 * d * kd) + 3 * d + d * d + d  # q/k/v, bias, out
            ff = (2 * d * self.feedforward + self.feedforward + d + 2 * d) if self.feedforward else 0
            return attn + 2 * d + ff  # + layer norm

        total += self.layers * block(dq, dc)
        if self.bidirectional:
            total += self.layers * block(dc, dq)
        return total
