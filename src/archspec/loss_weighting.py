"""How the losses of a multi-task model are combined (``training.loss_weighting``).

The training loop asks a :class:`LossWeighting` for the total loss instead of summing the fixed
weights itself, steps the weighting's own state once per optimizer step (GradNorm) and once per
completed epoch (DWA), logs its effective weights, and saves/restores its state with the
checkpoint (JSON: every float32 value round-trips exactly, so resume stays bit-identical).

- ``fixed``: Σ weight × loss (the compiled loss, unchanged).
- ``uncertainty``: Kendall, Gal & Cipolla (2018), one learned log-variance s per loss:
  regression ``exp(-s)/2 · L + s/2``, classification ``exp(-s) · L + s/2``.
- ``gradnorm``: Chen et al. (2018), weights learned so that the gradient norms of the weighted
  losses on the last shared layer approach ``mean norm × r_i^alpha`` (r_i: relative inverse
  training rate), renormalised to sum to the number of losses.
- ``dwa``: Liu, Johns & Davison (2019), ``K × softmax(r_k / T)`` per epoch from the ratio of the
  last two epoch-mean training losses.
"""

from __future__ import annotations

import math

import torch

from .errors import TrainingError


class LossWeighting:
    """``fixed`` weighting, and the interface of the learned ones.

    Args:
        loss_fn: the compiled loss (:class:`archspec.nn.losses.CompiledLoss`).
    """

    method = "fixed"

    def __init__(self, loss_fn):
        self.loss_fn = loss_fn
        self.names = [name for name, *_ in loss_fn.terms]
        self.prior = [float(w) for _, w, *_ in loss_fn.terms]
        # epoch sums of each unweighted training loss (for the log, and for DWA)
        self._sums = [0.0] * len(self.names)
        self._count = 0

    # --- the loop's hooks -----------------------------------------------------------------------
    def parameters(self) -> list[torch.nn.Parameter]:
        """Parameters trained by the model's optimizer (a parameter group of their own)."""
        return []

    def __call__(self, outputs: dict, targets: dict, inputs: dict | None = None,
                 train: bool = False) -> tuple[torch.Tensor, dict]:
        """``(total, per_head)`` like the compiled loss; ``train`` also records what the method
        learns from (GradNorm's gradient norms, the epoch-mean losses)."""
        if type(self) is LossWeighting:
            total, per_head = self.loss_fn(outputs, targets, inputs)
            if train:
                self._observe(per_head)
            return total, per_head
        values = self.loss_fn.values(outputs, targets, inputs)
        total = self.combine(values, train)
        per_head = {k: v.detach() for k, v in values.items()}
        if train:
            self._observe(per_head)
        return total, per_head

    def combine(self, values: dict, train: bool) -> torch.Tensor:
        """The weighted total of the unweighted losses ``values`` (fixed: Σ weight × loss)."""
        return sum(w * values[n] for n, w in zip(self.names, self.prior))

    def step(self) -> None:
        """After each optimizer step."""

    def end_epoch(self) -> None:
        """After each completed epoch."""
        self._sums = [0.0] * len(self.names)
        self._count = 0

    def discard(self) -> None:
        """The last micro-batch was skipped (non-finite loss): forget what it taught."""

    def weights(self) -> list[float]:
        """Effective weight of each loss now (the factor its loss is multiplied by)."""
        return list(self.prior)

    def log(self) -> dict:
        """``weight/<head>`` and the epoch-mean unweighted ``train/<head>/loss`` for metrics.jsonl."""
        out = {f"weight/{n}": round(w, 6) for n, w in zip(self.names, self.weights())}
        if self._count:
            out.update({f"train/{n}/loss": s / self._count for n, s in zip(self.names, self._sums)})
        return out

    def state_dict(self) -> dict:
        return {"method": self.method, "names": self.names, "sums": list(self._sums), "count": self._count}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return  # a checkpoint written before loss weighting existed: fixed weights, fresh sums
        if state.get("method") != self.method or state.get("names") != self.names:
            raise TrainingError(f"the checkpoint's loss weighting ({state.get('method')} over "
                                f"{state.get('names')}) differs from the spec's ({self.method} over {self.names})")
        self._sums = [float(x) for x in state["sums"]]
        self._count = int(state["count"])

    # --- helpers --------------------------------------------------------------------------------
    def _observe(self, per_head: dict) -> None:
        vals = [float(per_head[n]) for n in self.names]
        if all(math.isfinite(v) for v in vals):
            self._sums = [s + v for s, v in zip(self._sums, vals)]
            self._count += 1


class UncertaintyWeighting(LossWeighting):
    """Kendall et al. (2018): learned log-variances ``s``, trained by the model's optimizer."""

    method = "uncertainty"

    def __init__(self, loss_fn, init_log_variance: float = 0.0, regression: list[bool] | None = None,
                 device=None):
        super().__init__(loss_fn)
        self.log_var = torch.nn.Parameter(torch.full((len(self.names),), float(init_log_variance), device=device))
        self.regression = list(regression or [False] * len(self.names))
        # regression: 1/(2σ²); classification: 1/σ²
        self.scale = [0.5 if r else 1.0 for r in self.regression]

    def parameters(self):
        return [self.log_var]

    def combine(self, values, train):
        s = self.log_var
        total = None
        for i, name in enumerate(self.names):
            if self.prior[i] == 0:
                continue  # `weight: 0` keeps a head without training on it (its s would fall forever)
            si = s[i]
            term = self.scale[i] * self.prior[i] * torch.exp(-si) * values[name] + 0.5 * si
            total = term if total is None else total + term
        return total if total is not None else sum(v * 0.0 for v in values.values())

    def weights(self):
        with torch.no_grad():
            return [float(c * p * math.exp(-float(si))) for c, p, si in
                    zip(self.scale, self.prior, self.log_var.detach().cpu().tolist())]

    def log(self):
        out = super().log()
        out.update({f"log_variance/{n}": round(float(s), 6) for n, s in zip(self.names, self.log_var.detach().cpu())})
        return out

    def state_dict(self):
        return {**super().state_dict(), "log_var": self.log_var.detach().cpu().tolist()}

    def load_state_dict(self, state):
        if not state:
            return
        super().load_state_dict(state)
        with torch.no_grad():
            self.log_var.copy_(torch.tensor(state["log_var"], dtype=self.log_var.dtype, device=self.log_var.device))


class GradNormWeighting(LossWeighting):
    """Chen et al. (2018). ``layer`` is the weight tensor of the last shared layer (or a list of
    tensors: the norm is taken over all of them, e.g. the last layers of a concatenation's branches)."""

    method = "gradnorm"

    def __init__(self, loss_fn, layer, alpha: float = 1.5, lr: float = 0.025):
        super().__init__(loss_fn)
        self.layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
        layer = self.layers[0]
        k = len(self.names)
        # a loss with `weight: 0` is not trained on: its weight stays 0 and it takes no part
        self.active = torch.tensor([p > 0 for p in self.prior], device=layer.device)
        n_active = int(self.active.sum())
        total = sum(self.prior)
        init = [n_active * p / total for p in self.prior] if total > 0 else [1.0] * k
        self.w = torch.nn.Parameter(torch.tensor(init, dtype=torch.float32, device=layer.device))
        self.alpha = float(alpha)
        self.opt = torch.optim.Adam([self.w], lr=lr)
        self.initial: list[float] | None = None  # L_i(0)
        self._grad = torch.zeros(k, dtype=torch.float32, device=layer.device)
        self._n = 0
        self.last_norms: list[float] = [0.0] * k

    def combine(self, values, train):
        w = self.w.detach()
        losses = [values[n] for n in self.names]
        if train and torch.is_grad_enabled() and all(bool(torch.isfinite(v)) for v in losses):
            self._accumulate(losses)
        total = None
        for i, v in enumerate(losses):
            term = w[i] * v
            total = term if total is None else total + term
        return total

    def _accumulate(self, losses: list[torch.Tensor]) -> None:
        # G_i = ||∇_W w_i L_i|| = w_i ||∇_W L_i||; the gradient of L_grad = Σ |G_i - target_i| w.r.t.
        # w_i is then sign(G_i - target_i) ||∇_W L_i||, with the target held constant (as in the paper).
        norms = []
        for v, on in zip(losses, self.active.tolist()):
            g = None
            if on:
                grads = torch.autograd.grad(v, self.layers, retain_graph=True, allow_unused=True)
                g = [x.detach().float().pow(2).sum() for x in grads if x is not None] or None
            norms.append(torch.zeros((), device=self.w.device) if g is None else torch.stack(g).sum().sqrt())
        g = torch.stack(norms)  # (K,)
        vals = [float(v.detach()) for v in losses]
        if self.initial is None:
            self.initial = vals
        ratio = torch.tensor([v / i if i > 0 else 1.0 for v, i in zip(vals, self.initial)], device=g.device)
        act = self.active
        r = ratio / ratio[act].mean()  # relative inverse training rate
        w = self.w.detach()
        weighted = w * g
        target = weighted[act].mean() * r ** self.alpha
        self._grad += torch.where(act, torch.sign(weighted - target) * g, torch.zeros_like(g))
        self._n += 1
        self.last_norms = weighted.tolist()

    def step(self):
        if not self._n:
            return
        self.w.grad = self._grad / self._n
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            act = self.active
            self.w.copy_(torch.where(act, self.w.clamp(min=1e-4), torch.zeros_like(self.w)))
            self.w.mul_(int(act.sum()) / self.w.sum())  # Σ w_i = K (the losses trained on)
        self._grad.zero_()
        self._n = 0

    def discard(self):
        self._grad.zero_()
        self._n = 0

    def weights(self):
        return self.w.detach().cpu().tolist()

    def log(self):
        out = super().log()
        out.update({f"grad_norm/{n}": round(g, 6) for n, g in zip(self.names, self.last_norms)})
        return out

    def state_dict(self):
        st = self.opt.state_dict()
        adam = {str(k): {kk: (vv.cpu().tolist() if torch.is_tensor(vv) else vv) for kk, vv in v.items()}
                for k, v in st["state"].items()}
        return {**super().state_dict(), "w": self.w.detach().cpu().tolist(), "initial": self.initial,
                "adam": adam, "grad": self._grad.cpu().tolist(), "n": self._n, "last_norms": self.last_norms}

    def load_state_dict(self, state):
        if not state:
            return
        super().load_state_dict(state)
        dev = self.w.device
        with torch.no_grad():
            self.w.copy_(torch.tensor(state["w"], dtype=torch.float32))
        self.initial = state["initial"]
        st = self.opt.state_dict()
        st["state"] = {int(k): {kk: (torch.tensor(vv, dtype=torch.float32, device=dev if kk != "step" else "cpu")
                                     if isinstance(vv, (list, float)) else vv) for kk, vv in v.items()}
                       for k, v in state["adam"].items()}
        self.opt.load_state_dict(st)
        self._grad = torch.tensor(state["grad"], dtype=torch.float32, device=dev)
        self._n = int(state["n"])
        self.last_norms = list(state["last_norms"])


class DWAWeighting(LossWeighting):
    """Liu et al. (2019): weights from the ratio of the last two epoch-mean losses."""

    method = "dwa"

    def __init__(self, loss_fn, temperature: float = 2.0):
        super().__init__(loss_fn)
        self.temperature = float(temperature)
        self.history: list[list[float]] = []  # epoch-mean losses of the last two completed epochs
        self._w = self._compute()

    def _compute(self) -> list[float]:
        k = len(self.names)
        if len(self.history) < 2:
            r = [0.0] * k  # equal rates: the (prior-weighted) equal weights of the first two epochs
        else:
            r = [a / b if b > 0 else 1.0 for a, b in zip(self.history[-1], self.history[-2])]
        e = [p * math.exp(x / self.temperature) for p, x in zip(self.prior, r)]
        total = sum(e)
        return [k * x / total for x in e] if total > 0 else [1.0] * k

    def combine(self, values, train):
        total = None
        for name, w in zip(self.names, self._w):
            term = w * values[name]
            total = term if total is None else total + term
        return total

    def end_epoch(self):
        if self._count:
            self.history = (self.history + [[s / self._count for s in self._sums]])[-2:]
            self._w = self._compute()
        super().end_epoch()

    def weights(self):
        return list(self._w)

    def state_dict(self):
        return {**super().state_dict(), "history": self.history}

    def load_state_dict(self, state):
        if not state:
            return
        super().load_state_dict(state)
        self.history = [list(map(float, h)) for h in state["history"]]
        self._w = self._compute()


def last_shared_layer(model, node: str | None = None) -> tuple[str, list[str], list[torch.nn.Parameter]]:
    """``(node, parameter names, weights)`` of the last shared layer: the last weight matrix (or
    kernel, or embedding table) of the last node every loss reads. When that node has no weights
    of its own (an early fusion that only concatenates, an identity encoder), the last layers of
    the nodes it reads, together: they are what its output is made of.

    Raises:
        TrainingError: the losses share no trainable layer.
    """
    from .graph import shared_nodes

    g = model.checked.graph

    def last_layers(node: str, seen: set) -> list[tuple[str, torch.nn.Parameter]]:
        if node in seen or g.section.get(node) == "inputs":
            return []
        seen.add(node)
        last = None
        for mname, sub in model.node_module(node).named_modules():
            for pname, p in sub.named_parameters(recurse=False):
                if p.requires_grad and p.dim() >= 2:
                    last = (f"{node}.{mname}.{pname}" if mname else f"{node}.{pname}", p)
        if last is not None:
            return [last]
        return [x for src in g.edges.get(node, []) for x in last_layers(src, seen)]

    for name in ([node] if node else reversed(shared_nodes(g))):
        found = last_layers(name, set())
        if found:
            return name, [n for n, _ in found], [p for _, p in found]
    raise TrainingError("gradnorm needs a layer that every loss trains, but the losses share no trainable "
                        "layer — read the heads from one shared encoder or fusion, or use `loss_weighting: "
                        "{type: uncertainty}` / `dwa`")


def make_weighting(cfg, model, loss_fn, world: int = 1) -> LossWeighting:
    """The :class:`LossWeighting` of ``training.loss_weighting`` for a compiled model and loss.

    Raises:
        TrainingError: a learned weighting in a multi-process run, or GradNorm without a shared layer.
    """
    if cfg.type == "fixed":
        return LossWeighting(loss_fn)
    if world > 1:
        raise TrainingError(f"`loss_weighting: {cfg.type}` is not supported with {world} processes yet (each "
                            "process would learn its own weights) — train on one process, or use fixed weights")
    device = next((p.device for p in model.parameters()), None)
    if cfg.type == "uncertainty":
        regression = ["regression" in getattr(model.node_configs[n].loss, "applies_to", ()) for n, *_ in loss_fn.terms]
        return UncertaintyWeighting(loss_fn, cfg.init_log_variance, regression, device)
    if cfg.type == "gradnorm":
        _, _, layer = last_shared_layer(model, cfg.layer)
        return GradNormWeighting(loss_fn, layer, cfg.alpha, cfg.lr)
    if cfg.type == "dwa":
        return DWAWeighting(loss_fn, cfg.temperature)
    raise ValueError(cfg.type)
