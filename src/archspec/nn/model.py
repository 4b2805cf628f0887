"""The compiled model: one module per spec node, named after the node, run in topological order."""

from __future__ import annotations

import torch
from torch import nn

from ..shapes import IMAGE, INDEX, SEQUENCE, TOKENS, Shape


class CompiledModel(nn.Module):
    """An ``nn.Module`` compiled from a spec.

    Submodules live in ``encoders``, ``fusions`` and ``heads`` (``nn.ModuleDict``) under their node
    names, so ``state_dict()`` keys read like the spec (``encoders.user_tower.0.weight``).

    ``forward(batch)`` takes a dict of input tensors keyed by input node name (text inputs also
    ``"<name>.mask"``) and returns a dict with every prediction's output keyed by node name
    (logits for heads, probabilities for late fusions unless `logit_average`), plus for similarity
    heads the tower embeddings ``"<head>.query"`` and ``"<head>.candidate"``.
    """

    def __init__(self, plan: list, modules: dict, sections: dict, predictions: list, similarity: dict,
                 frozen: list, inputs: dict, node_configs: dict, shapes: dict):
        super().__init__()
        self.encoders = nn.ModuleDict()
        self.fusions = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        for name, module in modules.items():
            getattr(self, sections[name])[name] = module
        self.plan = plan  # [(name, section, [argument keys])] in topological order
        self.sections = sections
        self.predictions = list(predictions)
        self.similarity = dict(similarity)  # head -> (query node, candidate node)
        self.frozen = list(frozen)
        self.inputs = dict(inputs)  # input name -> Shape (with batch-free dims)
        self.node_configs = node_configs
        self.shapes = dict(shapes)
        self.output_kinds = {n: s.kind for n, s in shapes.items()}
        self.vocab = {}
        self.task_keys: dict = {}  # mmoe node -> ("node.task", ...): its per-task outputs
        self._plans: dict = {}
        self._step_plans: dict = {}
        for name in self.frozen:
            for p in self.encoders[name].parameters():
                p.requires_grad_(False)

    def node_module(self, name: str) -> nn.Module:
        return getattr(self, self.sections[name])[name]

    def train(self, mode: bool = True):
        """Like ``nn.Module.train``, but frozen encoders stay in eval mode (BatchNorm statistics
        and dropout of a frozen pretrained encoder are not trained either)."""
        super().train(mode)
        for name in self.frozen:
            self.encoders[name].eval()
        return self

    def _subplan(self, targets: tuple) -> list:
        if targets not in self._plans:
            need = set(targets)
            keep = []
            for name, section, args in reversed(self.plan):
                if name in need:
                    keep.append((name, section, args))
                    need.update(a.split(".")[0] for a in args)  # `x.mask`, `moe.task` come from x, moe
            self._plans[targets] = list(reversed(keep))
        return self._plans[targets]

    def _steps(self, targets: tuple) -> list:
        """``_subplan`` as ``(name, section attribute, args, is similarity)``, cached: ``run`` is on
        the hot path of every training step, so it does no per-call planning or attribute lookups."""
        if targets not in self._step_plans:
            self._step_plans[targets] = [
                (name, section, tuple(args), name in self.similarity,
                 self.shapes.get(name) is not None and self.shapes[name].kind == SEQUENCE,
                 self.task_keys.get(name, ())) for name, section, args in self._subplan(targets)]
        return self._step_plans[targets]

    def run(self, batch: dict, targets) -> dict:
        """Compute only what ``targets`` (node names) need; returns every computed value."""
        values = dict(batch)
        sections = self._modules  # read at each call, so a node module replaced later is used
        for name, attr, args, is_similarity, is_sequence, task_keys in self._steps(tuple(targets)):
            xs = [values[a] for a in args]
            if is_similarity:
                values[name + ".query"], values[name + ".candidate"] = xs
            out = values[name] = sections[attr]._modules[name](*xs)
            if is_sequence or task_keys:
                values.update(self.derived_values(name, out, args, values, task_keys))
        return values

    @staticmethod
    def derived_values(name: str, out: torch.Tensor, args, values: dict, task_keys=()) -> dict:
        """Values a node's output implies: each task's slice of an mmoe ``(B, K, D)`` as ``node.task``,
        and the padding mask ``node.mask`` of a sequence ``(B, T, D)`` — its input's mask when the
        positions are its input's tokens (or sequence), else all ones (e.g. a CNN's patches)."""
        extra = {key: out[:, i] for i, key in enumerate(task_keys)}
        if out.dim() == 3 and not task_keys:
            masks = [a for a in args if a.endswith(".mask")]
            if len(masks) == 1 and values[masks[0]].shape[1] == out.shape[1]:
                extra[name + ".mask"] = values[masks[0]]
            else:
                extra[name + ".mask"] = torch.ones(out.shape[:2], dtype=torch.long, device=out.device)
        return extra

    def forward(self, batch: dict) -> dict:
        values = self.run(batch, tuple(self.predictions))
        out = {name: values[name] for name in self.predictions}
        for head in self.similarity:
            out[head + ".query"] = values[head + ".query"]
            out[head + ".candidate"] = values[head + ".candidate"]
        return out

    def encode(self, batch: dict, node: str) -> torch.Tensor:
        """Output of one node (e.g. a tower) computing only its ancestors: ``(B, D)``."""
        return self.run(batch, (node,))[node]

    def tower(self, head: str, side: str) -> "Tower":
        """A module computing one side (``query`` or ``candidate``) of a similarity head on its own,
        e.g. to precompute the embeddings of a whole catalogue."""
        q, c = self.similarity[head]
        return Tower(self, q if side == "query" else c)

    def input_keys(self, nodes=None) -> list[str]:
        """Batch keys the model (or the given nodes) reads, in a fixed order."""
        needed = None
        if nodes is not None:
            # a node that is itself an input (e.g. a tower that is a raw feature vector) reads itself
            needed = {a for _, _, args in self._subplan(tuple(nodes)) for a in args} | set(nodes)
        keys = []
        for name, shape in self.inputs.items():
            for k in ([name, name + ".mask"] if shape.kind == TOKENS else [name]):
                if needed is None or k in needed:
                    keys.append(k)
        return keys

    def example_batch(self, batch_size: int = 2, seed: int = 0) -> dict:
        """Random inputs of the right shapes and dtypes (for dry runs and export)."""
        g = torch.Generator().manual_seed(seed)
        out = {}
        for name, shape in self.inputs.items():
            dims = (batch_size, *shape.dims)
            if shape.kind == TOKENS:
                high = max(2, min(self.vocab.get(name, 100), 100))
                out[name] = torch.randint(1, high, dims, generator=g)
                mask = torch.ones(dims, dtype=torch.long)
                if dims[1] > 1:
                    mask[0, -1] = 0
                out[name + ".mask"] = mask
            elif shape.kind == INDEX:
                out[name] = torch.randint(0, max(1, self.vocab.get(name, 2)), dims, generator=g)
            elif shape.kind == IMAGE:
                out[name] = torch.rand(dims, generator=g)
            else:
                out[name] = torch.randn(dims, generator=g)
        return out

    def parameter_counts(self, name: str) -> tuple[int, int]:
        """``(trainable, frozen)`` parameter counts of one node."""
        if name not in self.sections or self.sections[name] == "inputs":
            return 0, 0
        t = f = 0
        for p in self.node_module(name).parameters():
            if p.requires_grad:
                t += p.numel()
            else:
                f += p.numel()
        return t, f


class Tower(nn.Module):
    """One node's output as a module of its own (shares parameters with the model)."""

    def __init__(self, model: CompiledModel, node: str):
        super().__init__()
        self.model = model
        self.node = node

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model.encode(batch, self.node)
