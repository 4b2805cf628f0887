"""Loss builders and the compiled loss: total = Σ weight × loss of each prediction."""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..registry import REGISTRIES, register_builder

_EPS = 1e-7


@register_builder("loss", "cross_entropy")
def build_cross_entropy(cfg, on_probs: bool, head) -> Callable:
    weight = torch.tensor(cfg.class_weights, dtype=torch.float32) if cfg.class_weights else None

    def loss(logits, target, outputs):
        w = weight.to(logits.device) if weight is not None else None
        return F.cross_entropy(logits, target, weight=w, label_smoothing=cfg.label_smoothing)

    return loss


@register_builder("loss", "nll")
def build_nll(cfg, on_probs: bool, head) -> Callable:
    def loss(probs, target, outputs):
        return F.nll_loss(torch.log(probs.clamp_min(_EPS)), target)

    return loss


@register_builder("loss", "binary_cross_entropy")
def build_bce(cfg, on_probs: bool, head) -> Callable:
    pw = cfg.pos_weight
    pos_weight = torch.tensor(pw if isinstance(pw, list) else [pw], dtype=torch.float32) if pw is not None else None

    def loss(x, target, outputs):
        p = pos_weight.to(x.device) if pos_weight is not None else None
        if not on_probs:
            return F.binary_cross_entropy_with_logits(x, target, pos_weight=p)
        x = x.clamp(_EPS, 1 - _EPS)
        pos = target * torch.log(x) * (p if p is not None else 1.0)
        return -(pos + (1 - target) * torch.log(1 - x)).mean()

    return loss


@register_builder("loss", "mse")
def build_mse(cfg, on_probs: bool, head) -> Callable:
    return lambda y, target, outputs: F.mse_loss(y, target)


@register_builder("loss", "huber")
def build_huber(cfg, on_probs: bool, head) -> Callable:
    return lambda y, target, outputs: F.huber_loss(y, target, delta=cfg.delta)


class Candidates:
    """The distinct candidates of a similarity head's training split: their input rows and how often
    each is a positive (what the logQ correction and random negatives draw on).

    A candidate's identity is a hash of the tensors its tower reads (so two rows with the same
    item features are the same item), as the popularity baseline counts them.
    """

    def __init__(self, keys: list[str], rows: dict, counts: torch.Tensor, index: dict):
        self.keys = keys  # batch keys the candidate tower reads
        self.rows = rows  # key -> (N, ...) tensor of the distinct candidates
        self.counts = counts  # (N,) float64 occurrences in the training split
        self.index = index  # hash -> row in `rows`
        self.log_p = torch.log(counts / counts.sum()).float()  # (N,) log sampling probability
        self.log_p_unseen = float(torch.log(1.0 / counts.sum()))  # an item never seen in training: count 1

    @classmethod
    def fit(cls, keys: list[str], inputs: dict) -> "Candidates":
        from ..baselines import _row_keys

        hashes = _row_keys(inputs, keys)
        index: dict = {}
        first, counts = [], []
        for i, h in enumerate(hashes):
            j = index.get(h)
            if j is None:
                index[h] = j = len(first)
                first.append(i)
                counts.append(0)
            counts[j] += 1
        take = torch.tensor(first, dtype=torch.long)
        rows = {k: inputs[k].index_select(0, take) for k in keys}
        return cls(keys, rows, torch.tensor(counts, dtype=torch.float64), index)

    def ids(self, inputs: dict) -> torch.Tensor:
        """`(B,)` row of each batch row's candidate in the table; -1 when it was never seen in training."""
        from ..baselines import _row_keys

        cpu = {k: inputs[k].detach().cpu() for k in self.keys}
        return torch.tensor([self.index.get(h, -1) for h in _row_keys(cpu, self.keys)], dtype=torch.long)

    def log_prob(self, ids: torch.Tensor) -> torch.Tensor:
        lp = self.log_p.to(ids.device)
        return torch.where(ids >= 0, lp[ids.clamp_min(0)], torch.full_like(lp[:1], self.log_p_unseen).expand(len(ids)))


@register_builder("loss", "contrastive")
def build_contrastive(cfg, on_probs: bool, head) -> Callable:
    """In-batch softmax: row i's positive is candidate i, every other candidate of the batch (and
    `random_negatives` uniform draws from the training candidates) a negative.

    With the candidates' identities (``fit`` on the training inputs, then ``ids`` per batch, which
    :class:`CompiledLoss` passes as the target), accidental hits are masked by identity and the
    logQ correction subtracts ``log(expected occurrences among the negatives)``: ``B * p(item)`` for
    an in-batch candidate, ``M / N`` for one of M uniform draws from N candidates. Without them
    (e.g. a loss called on outputs alone) identical candidate embeddings count as the same item and
    nothing is corrected.
    """
    name = head["name"]
    sim = head["module"]
    model = head.get("model")
    state: dict = {"candidates": None}

    def scale(logits):
        if sim.loss_log_scale is not None:
            return logits * sim.loss_log_scale.clamp(max=math.log(100.0)).exp()  # T >= 0.01
        if cfg.temperature is not None:
            return logits / cfg.temperature
        return logits

    def loss(score, ids, outputs):
        q, c = outputs[name + ".query"], outputs[name + ".candidate"]  # (B, D) each
        b = q.shape[0]
        logits = scale(sim.pairwise(q, c))  # (B, B)
        table = state["candidates"]
        if cfg.mask_accidental_hits:
            with torch.no_grad():
                if ids is not None:
                    same = (ids.unsqueeze(1) == ids.unsqueeze(0)) & (ids.unsqueeze(1) >= 0)
                else:
                    same = (c.unsqueeze(1) == c.unsqueeze(0)).all(-1)  # duplicate candidates in the batch
                same.fill_diagonal_(False)
            logits = logits.masked_fill(same, torch.finfo(logits.dtype).min)
        if cfg.logq_correction and ids is not None and table is not None:
            logits = logits - (table.log_prob(ids) + math.log(b)).unsqueeze(0)  # per candidate column
        labels = torch.arange(b, device=logits.device)
        if cfg.random_negatives and table is not None and model is not None and model.training:
            n = len(table.counts)
            draw = torch.randint(0, n, (cfg.random_negatives,))
            rows = {k: v.index_select(0, draw).to(q.device) for k, v in table.rows.items()}
            cand_node = model.similarity[name][1]
            extra = scale(sim.pairwise(q, model.encode(rows, cand_node)))  # (B, M)
            if cfg.mask_accidental_hits and ids is not None:
                hit = ids.unsqueeze(1) == draw.to(ids.device).unsqueeze(0)
                extra = extra.masked_fill(hit, torch.finfo(extra.dtype).min)
            if cfg.logq_correction:
                extra = extra - math.log(cfg.random_negatives / n)
            out = F.cross_entropy(torch.cat([logits, extra], dim=1), labels)
        else:
            out = F.cross_entropy(logits, labels)
        if cfg.symmetric:
            out = 0.5 * (out + F.cross_entropy(logits.T, labels))
        return out

    def fit(inputs: dict) -> None:
        """Fit the candidate table on the training split's inputs."""
        keys = model.input_keys([model.similarity[name][1]])
        state["candidates"] = Candidates.fit(keys, inputs)

    def ids(inputs: dict):
        table = state["candidates"]
        return None if table is None else table.ids(inputs).to(next(iter(inputs.values())).device)

    loss.fit = fit
    loss.ids = ids
    loss.state = state
    return loss


class CompiledLoss:
    """Weighted sum of every prediction's loss.

    Call with the model's outputs and the targets (by prediction name); returns
    ``(total, per_head)`` where ``per_head`` holds each unweighted loss (detached).
    """

    def __init__(self, terms: list[tuple[str, float, Callable, bool]]):
        self.terms = terms  # (name, weight, fn, needs_target)

    @property
    def weights(self) -> dict[str, float]:
        return {name: w for name, w, _, _ in self.terms}

    @staticmethod
    def _target(fn, name: str, needs_target: bool, targets: dict, inputs: dict | None):
        if needs_target:
            return targets[name]
        # a contrastive loss: the candidates' identities, when the inputs are given
        return fn.ids(inputs) if inputs is not None and hasattr(fn, "ids") else None

    def values(self, outputs: dict, targets: dict, inputs: dict | None = None) -> dict:
        """Each unweighted loss, not detached (what a learned loss weighting combines)."""
        return {name: fn(outputs[name], self._target(fn, name, needs_target, targets, inputs), outputs)
                for name, _, fn, needs_target in self.terms}

    def __call__(self, outputs: dict, targets: dict, inputs: dict | None = None) -> tuple[torch.Tensor, dict]:
        total = None
        per_head = {}
        for name, weight, fn, needs_target in self.terms:
            value = fn(outputs[name], self._target(fn, name, needs_target, targets, inputs), outputs)
            per_head[name] = value.detach()
            term = value if weight == 1.0 else weight * value  # no extra autograd node for the default
            total = term if total is None else total + term
        if total is None:
            total = torch.zeros(())
        return total, per_head

    def fit(self, inputs: dict) -> None:
        """Fit what a loss learns from the training split (contrastive: candidate frequencies and
        the pool of random negatives). Call once with the training inputs before training."""
        for _, _, fn, _ in self.terms:
            if hasattr(fn, "fit"):
                fn.fit(inputs)

    @property
    def needs_fit(self) -> bool:
        return any(hasattr(fn, "fit") for _, _, fn, _ in self.terms)


def build_loss(model) -> CompiledLoss:
    """The compiled loss of a :class:`~archspec.nn.model.CompiledModel`."""
    terms = []
    for name in model.predictions:
        cfg = model.node_configs[name]
        loss_cfg = getattr(cfg, "loss", None)
        if loss_cfg is None:
            continue
        on_probs = model.output_kinds[name] == "probs"
        head = {"name": name, "module": model.node_module(name), "model": model}
        fn = REGISTRIES["loss"].builders[loss_cfg.type](loss_cfg, on_probs, head)
        terms.append((name, float(loss_cfg.weight), fn, loss_cfg.type != "contrastive"))
    return CompiledLoss(terms)
