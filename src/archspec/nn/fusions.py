"""Torch builders of the fusions: `early` (features) and `late` (predictions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import decide_labels
from ..registry import register_builder
from .layers import L2Norm, dense_stack, masked_pool, norm1d


class EarlyFusion(nn.Module):
    """Per-branch projection and normalisation, concatenation, dense layers."""

    def __init__(self, projections: list[nn.Module], norms: list[nn.Module], dense: nn.Module):
        super().__init__()
        self.project = nn.ModuleList(projections)
        self.branch_norm = nn.ModuleList(norms)
        self.dense = dense

    def forward(self, *branches: torch.Tensor) -> torch.Tensor:  # each (B, D_i) -> (B, D_out)
        xs = [n(p(x)) for x, p, n in zip(branches, self.project, self.branch_norm)]
        return self.dense(torch.cat(xs, dim=-1))


@register_builder("fusion", "early")
def build_early(cfg, in_shapes, ctx) -> nn.Module:
    projections, norms, widths = [], [], []
    for name, shape in zip(cfg.inputs, in_shapes):
        w = ctx.width(shape)
        p = cfg.project.get(name) if isinstance(cfg.project, dict) else cfg.project
        projections.append(nn.Linear(w, p) if p else nn.Identity())
        w = p or w
        widths.append(w)
        if cfg.branch_norm == "l2":
            norms.append(L2Norm())
        else:
            norms.append(norm1d(cfg.branch_norm, w))
    dense, _ = dense_stack(sum(widths), list(cfg.layers), cfg.activation, cfg.dropout, cfg.norm)
    return EarlyFusion(projections, norms, dense)


def _to_probs(x: torch.Tensor, kind: str, is_probs: bool) -> torch.Tensor:
    if is_probs:
        return x
    return torch.softmax(x, dim=-1) if kind == "multiclass" else torch.sigmoid(x)


def _to_logits(x: torch.Tensor, kind: str, is_probs: bool) -> torch.Tensor:
    if not is_probs:
        return x
    x = x.clamp(1e-7, 1 - 1e-7)
    return torch.log(x) if kind == "multiclass" else torch.logit(x)


class LateFusion(nn.Module):
    """Combines member predictions that share one label space.

    Members give logits (heads) or probabilities (other late fusions); the output is probabilities,
    except for `logit_average` (logits).
    """

    def __init__(self, combine: str, weights: list[float], kind: str, member_probs: list[bool],
                 independent: bool, threshold: float | None = 0.5):
        super().__init__()
        self.combine = combine
        self.kind = kind
        self.member_probs = list(member_probs)
        self.independent = independent
        self.threshold = threshold
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))
        if combine == "learned":
            self.weight_logits = nn.Parameter(torch.zeros(len(weights)))

    def member_weights(self) -> torch.Tensor:
        if self.combine == "learned":
            return torch.softmax(self.weight_logits, dim=0)
        return self.weights

    def forward(self, *members: torch.Tensor) -> torch.Tensor:  # each (B, C) or (B,) -> same
        if self.independent:
            members = tuple(m.detach() for m in members)
        w = self.member_weights()
        if self.combine == "logit_average":
            xs = [_to_logits(m, self.kind, p) for m, p in zip(members, self.member_probs)]
        else:
            xs = [_to_probs(m, self.kind, p) for m, p in zip(members, self.member_probs)]
            if self.combine == "hard_vote":
                if self.kind == "multiclass":
                    xs = [F.one_hot(x.argmax(-1), x.shape[-1]).to(x.dtype) for x in xs]
                else:
                    xs = [decide_labels(self.kind, x, self.threshold).to(x.dtype) for x in xs]
        stacked = torch.stack(xs, dim=0)  # (M, B, ...)
        w = w.to(stacked.dtype).reshape(-1, *([1] * (stacked.dim() - 1)))
        return (stacked * w).sum(0)


@register_builder("fusion", "late")
def build_late(cfg, in_shapes, ctx) -> nn.Module:
    n = len(cfg.inputs)
    weights = list(cfg.weights) if cfg.weights is not None and cfg.combine not in ("soft_vote", "learned") \
        else [1.0 / n] * n
    kind = ctx.prediction_kind(cfg.inputs[0])
    member_probs = [s.kind == "probs" for s in in_shapes]
    # the fused prediction's own threshold, else its first member's: graph.prediction_threshold
    threshold = cfg.threshold if cfg.threshold is not None else ctx.prediction_threshold(cfg.inputs[0])
    return LateFusion(cfg.combine, weights, kind, member_probs, cfg.training == "independent", threshold)


class ExtractionLevel(nn.Module):
    """One level of MMoE/PLE: shared experts, optional experts per task, one softmax gate per task
    (and, below the top level of PLE, a shared gate over every expert)."""

    def __init__(self, in_width: int, tasks: int, shared: int, per_task: int, widths: list[int], act: str,
                 dropout: float, shared_gate: bool):
        super().__init__()

        def expert() -> nn.Module:
            return dense_stack(in_width, widths, act, dropout, "none")[0]

        self.shared = nn.ModuleList(expert() for _ in range(shared))
        self.task = nn.ModuleList(nn.ModuleList(expert() for _ in range(per_task)) for _ in range(tasks))
        # gates as in both papers: softmax(W x), no bias; a task's gate mixes its own experts, then the shared
        self.gates = nn.ModuleList(nn.Linear(in_width, per_task + shared, bias=False) for _ in range(tasks))
        self.shared_gate = nn.Linear(in_width, tasks * per_task + shared, bias=False) if shared_gate else None

    def gate_weights(self, task_inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each task's gate: ``(B, experts it mixes)`` probabilities."""
        return [torch.softmax(gate(x), dim=-1) for gate, x in zip(self.gates, task_inputs)]

    def forward(self, task_inputs: list[torch.Tensor], shared_input: torch.Tensor):
        shared = [e(shared_input) for e in self.shared]  # each (B, D)
        outs, own_all = [], []
        for x, own_experts, gate in zip(task_inputs, self.task, self.gates):
            own = [e(x) for e in own_experts]
            own_all += own
            experts = torch.stack(own + shared, dim=1)  # (B, E, D)
            g = torch.softmax(gate(x), dim=-1)  # (B, E)
            outs.append(torch.bmm(g.unsqueeze(1), experts).squeeze(1))  # (B, D)
        if self.shared_gate is None:
            return outs, None
        experts = torch.stack(own_all + shared, dim=1)
        g = torch.softmax(self.shared_gate(shared_input), dim=-1)
        return outs, torch.bmm(g.unsqueeze(1), experts).squeeze(1)


class MMoE(nn.Module):
    """MMoE / PLE: ``(B, D_in)`` inputs (concatenated) → ``(B, K, D)``, one gated mixture per task."""

    def __init__(self, levels: list[ExtractionLevel]):
        super().__init__()
        self.levels = nn.ModuleList(levels)

    def gate_weights(self, *xs: torch.Tensor) -> list[torch.Tensor]:
        """The first level's gate probabilities per task, ``(B, E)`` each (for inspection)."""
        x = torch.cat(xs, dim=-1) if len(xs) > 1 else xs[0]
        return self.levels[0].gate_weights([x] * len(self.levels[0].gates))

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        x = torch.cat(xs, dim=-1) if len(xs) > 1 else xs[0]
        task_inputs, shared = [x] * len(self.levels[0].gates), x
        for level in self.levels:
            task_inputs, shared = level(task_inputs, shared)
        return torch.stack(task_inputs, dim=1)  # (B, K, D)


@register_builder("fusion", "mmoe")
def build_mmoe(cfg, in_shapes, ctx) -> nn.Module:
    width = sum(ctx.width(s) for s in in_shapes)
    levels = []
    for i in range(cfg.levels):
        top = i == cfg.levels - 1
        levels.append(ExtractionLevel(width, len(cfg.tasks), cfg.experts, cfg.task_experts, list(cfg.expert_layers),
                                      cfg.activation, cfg.dropout, shared_gate=not top))
        width = cfg.expert_layers[-1]
    return MMoE(levels)


class CrossAttentionBlock(nn.Module):
    """``x`` attends to ``context``: multi-head attention, residual + layer norm (post-norm, as in
    the original Transformer), then an optional feed-forward block with its own residual + norm."""

    def __init__(self, dim: int, context_dim: int, heads: int, dropout: float, feedforward: int | None):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, kdim=context_dim, vdim=context_dim,
                                          batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.ff = (nn.Sequential(nn.Linear(dim, feedforward), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(feedforward, dim)) if feedforward else None)
        self.ff_norm = nn.LayerNorm(dim) if feedforward else None

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor) -> torch.Tensor:
        # (B, T, D), (B, S, Dc), (B, S) with 1 = real position -> (B, T, D)
        pad = context_mask == 0
        empty = pad.all(dim=1)  # a context with no real position (e.g. an empty text) attends to nothing
        pad = pad & ~empty.unsqueeze(1)  # (avoids NaN from a softmax over nothing; zeroed below)
        a, _ = self.attn(x, context, context, key_padding_mask=pad, need_weights=False)
        a = a * (~empty).to(a.dtype)[:, None, None]
        x = self.norm(x + self.drop(a))
        if self.ff is not None:
            x = self.ff_norm(x + self.drop(self.ff(x)))
        return x


class CrossAttention(nn.Module):
    """``query`` ``(B, T, Dq)`` attends to ``context`` ``(B, S, Dc)`` over some layers, pooled over T
    (bidirectional: both attend to each other per layer; the two pooled vectors concatenated)."""

    def __init__(self, query_proj: nn.Module, context_proj: nn.Module, query_blocks: list[nn.Module],
                 context_blocks: list[nn.Module], pooling: str):
        super().__init__()
        self.query_proj = query_proj
        self.context_proj = context_proj
        self.query_blocks = nn.ModuleList(query_blocks)
        self.context_blocks = nn.ModuleList(context_blocks)  # empty unless bidirectional
        self.pooling = pooling

    def _pool(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "first":
            return x[:, 0]
        return masked_pool(x, mask, self.pooling)

    def forward(self, q: torch.Tensor, q_mask: torch.Tensor, c: torch.Tensor, c_mask: torch.Tensor) -> torch.Tensor:
        q, c = self.query_proj(q), self.context_proj(c)
        if not len(self.context_blocks):
            for block in self.query_blocks:
                q = block(q, c, c_mask)
            return self._pool(q, q_mask)  # (B, Dq)
        for qb, cb in zip(self.query_blocks, self.context_blocks):
            q, c = qb(q, c, c_mask), cb(c, q, q_mask)
        return torch.cat([self._pool(q, q_mask), self._pool(c, c_mask)], dim=-1)  # (B, Dq + Dc)


@register_builder("fusion", "cross_attention")
def build_cross_attention(cfg, in_shapes, ctx) -> nn.Module:
    wq, wc = ctx.width(in_shapes[0]), ctx.width(in_shapes[1])
    dq, dc = cfg.dim or wq, cfg.dim or wc
    qp = nn.Linear(wq, dq) if cfg.dim else nn.Identity()
    cp = nn.Linear(wc, dc) if cfg.dim else nn.Identity()
    qb = [CrossAttentionBlock(dq, dc, cfg.heads, cfg.dropout, cfg.feedforward) for _ in range(cfg.layers)]
    cb = [CrossAttentionBlock(dc, dq, cfg.heads, cfg.dropout, cfg.feedforward)
          for _ in range(cfg.layers)] if cfg.bidirectional else []
    return CrossAttention(qp, cp, qb, cb, cfg.pooling)
