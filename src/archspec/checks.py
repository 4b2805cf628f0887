"""Stage 5: semantic checks over a resolved graph whose shapes are inferred (torch-free).

Rules only: shape inference is :func:`archspec.shapes.infer_shapes`; questions about the graph
(label spaces, prediction kinds) are answered by :mod:`archspec.graph`. Each rule is one small function that reads the spec/graph and reports through ``ctx``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import ERROR, WARNING, Diagnostic, did_you_mean
from .graph import Graph, label_space, prediction_kind, prediction_metrics, unused_nodes
from .load import SourceMap
from .shapes import LOGITS, PROBS, infer_shapes
from .spec.losses import losses_for
from .spec.metrics import known_metrics, metric_kinds

_SQUASH = {"softmax", "sigmoid"}


@dataclass
class Context:
    """What rules see: the spec, its graph, inferred shapes, and a way to report."""

    spec: object
    graph: Graph
    smap: SourceMap
    base_dir: Path | None = None
    shapes: dict = field(default_factory=dict)
    diagnostics: list = field(default_factory=list)
    _prefix: tuple = ()

    def report(self, code, path, message, hint="", severity=ERROR, *, key=False):
        """Record a diagnostic at ``path`` (at its key's position with ``key=True``)."""
        path = self._prefix + tuple(path)
        line, col = self.smap.locate(path, key=key)
        self.diagnostics.append(Diagnostic(code, severity, path, message, hint, self.smap.file, line, col))

    def at(self, prefix: tuple) -> "Context":
        """A view of this context that reports relative to ``prefix``."""
        sub = Context(self.spec, self.graph, self.smap, self.base_dir, self.shapes, self.diagnostics, tuple(prefix))
        return sub


def check_late_labels(ctx: Context) -> None:
    """Late-fusion members make predictions over the same label space and target."""
    g = ctx.graph
    for name in g.order:
        cfg = g.nodes[name]
        if not g.is_late(name):
            continue
        spaces, targets = [], []
        for i, m in enumerate(cfg.inputs):
            space, target = label_space(g, m)
            if space is None:
                if m in g.nodes and g.section.get(m) == "heads" and g.nodes[m].type != "run":  # run: E-RUN-MEMBER
                    ctx.report("E-LATE-LABELS", g.path(name) + ("inputs", i), f"'{m}' is a "
                               f"{g.nodes[m].type} head, which has no class probabilities to combine",
                               "late fusion combines multiclass, multilabel or binary heads")
                continue
            spaces.append((i, m, space))
            targets.append(target)
        for i, m, space in spaces[1:]:
            if space[:2] != spaces[0][2][:2] or (space[2] and spaces[0][2][2] and space[2] != spaces[0][2][2]):
                ctx.report("E-LATE-LABELS", g.path(name) + ("inputs", i), f"'{m}' predicts {_space(space)}, "
                           f"but '{spaces[0][1]}' predicts {_space(spaces[0][2])}",
                           "late fusion members must share one label space")
        if cfg.target is None and len(set(targets)) > 1:
            ctx.report("E-LATE-LABELS", g.path(name) + ("inputs",), "members predict different columns: "
                       + ", ".join(sorted(set(targets))), "set `target:` for the fused prediction")


def _space(space) -> str:
    kind, n, names = space
    return f"{kind} over {n} {'labels' if kind == 'multilabel' else 'classes'}" + (
        f" [{', '.join(map(str, names))}]" if names else "")


def check_losses(ctx: Context) -> None:
    """Each loss fits what its node outputs (logits vs probabilities, head kind) and its sizes."""
    g = ctx.graph
    for name in g.predictions():
        cfg = g.nodes[name]
        loss = cfg.loss
        if loss is None:
            continue
        path = g.path(name) + ("loss",)
        shape = ctx.shapes.get(name)
        if g.is_late(name):
            kind = prediction_kind(g, name)
            if shape is not None and shape.kind == PROBS and loss.type == "cross_entropy":
                ctx.report("E-SOFTMAX-CE", path + ("type",), "cross_entropy applies a softmax, but this late "
                           f"fusion ({cfg.combine}) already gives probabilities: softmax twice",
                           "use `type: nll` on probabilities, or `combine: logit_average`")
                continue
            multiclass = ("cross_entropy",) if shape is not None and shape.kind == LOGITS else ("nll",)
            allowed = {"multiclass": multiclass, "multilabel": ("binary_cross_entropy",),
                       "binary": ("binary_cross_entropy",)}.get(kind, ())
            if shape is not None and shape.kind == LOGITS and loss.type == "nll":
                ctx.report("E-LOSS-KIND", path + ("type",), "nll reads probabilities, but `logit_average` gives "
                           "logits", "use `type: cross_entropy`")
                continue
        else:
            allowed = losses_for(cfg.kind)
            kind = cfg.kind
        if allowed and loss.type not in allowed:
            ctx.report("E-LOSS-KIND", path + ("type",), f"a {kind} prediction cannot use {loss.type} loss",
                       "use " + " or ".join(f"`type: {a}`" for a in allowed))
            continue
        width = shape.width if shape is not None else None
        cw = getattr(loss, "class_weights", None)
        if cw is not None and width is not None and len(cw) != width:
            ctx.report("E-SHAPE", path + ("class_weights",), f"{len(cw)} class weights for {width} classes",
                       "give one weight per class")
        pw = getattr(loss, "pos_weight", None)
        if isinstance(pw, list) and width is not None and len(pw) != width:
            ctx.report("E-SHAPE", path + ("pos_weight",), f"{len(pw)} positive weights for {width} labels",
                       "give one weight per label, or a single number")


def check_metrics(ctx: Context) -> None:
    """Every metric is known and applies to its head."""
    g = ctx.graph
    for name in g.predictions():
        cfg = g.nodes[name]
        kind = prediction_kind(g, name) if g.is_late(name) else cfg.kind
        for i, metric in enumerate(cfg.metrics or []):
            path = g.path(name) + ("metrics", i)
            kinds = metric_kinds(metric)
            if kinds is None:
                near = did_you_mean(metric, known_metrics())
                ctx.report("E-METRIC", path, f"unknown metric '{metric}'",
                           near or f"known: {', '.join(known_metrics())}")
            elif kind is not None and kind not in kinds and not (g.is_late(name) and "late" in kinds):
                ok = sorted(m for m in known_metrics() if kind in (metric_kinds(m.replace('K', '10')) or ()))
                ctx.report("E-METRIC", path, f"{metric} does not apply to a {kind} prediction",
                           f"use one of {', '.join(ok)}")


def check_squash(ctx: Context) -> None:
    """A softmax/sigmoid right before a classifier's logits squashes them (the seed's softmax-before-CE)."""
    g = ctx.graph
    for name in g.predictions():
        cfg = g.nodes[name]
        if g.is_late(name):
            continue
        if cfg.layers and cfg.activation in _SQUASH:
            ctx.report("W-SQUASH", g.path(name) + ("activation",), f"{cfg.activation} as a hidden activation "
                       "squashes features before the output layer; the head's loss already applies "
                       "softmax/sigmoid to its logits", "use relu or gelu for hidden layers", severity=WARNING)
        for rel, ref in cfg.references():
            src = g.nodes.get(ref)
            last_act = getattr(src, "activation", None)
            if src is not None and last_act in _SQUASH and getattr(src, "layers", None) \
                    and getattr(src, "activate_last", True):
                ctx.report("W-SQUASH", g.path(ref) + ("activation",), f"'{ref}' ends in {last_act} and feeds "
                           f"head '{name}': probabilities used as features (softmax before the loss)",
                           "use relu/gelu, or `activate_last: false` on an mlp", severity=WARNING)


def check_tokenizers(ctx: Context) -> None:
    """A pretrained transformer reads ids from its own tokenizer; trained vocabularies fit the embedding."""
    g = ctx.graph
    for name, cfg in g.nodes.items():
        if getattr(cfg, "type", None) != "transformer":
            continue
        src = g.nodes.get(cfg.input)
        tok = getattr(src, "tokenizer", None)
        if tok is None:
            continue
        if cfg.pretrained and tok.type == "wordpiece":
            ctx.report("W-TOKENIZER", g.path(cfg.input) + ("tokenizer",), f"'{cfg.input}' trains its own "
                       f"WordPiece vocabulary, but '{name}' is pretrained: its embeddings expect the ids of "
                       "its own tokenizer", f"use `tokenizer: {{type: pretrained, name: {cfg.pretrained}}}`",
                       severity=WARNING)
        from .spec.hf import known_config  # a pretrained model's vocab_size too (cached, or fetched by --online)

        vocab = (known_config(cfg.pretrained, cfg.config, ctx.base_dir) or {}).get("vocab_size")
        if tok.type in ("wordpiece", "whitespace") and isinstance(vocab, int) and tok.vocab_size > vocab:
            ctx.report("E-VOCAB", g.path(cfg.input) + ("tokenizer", "vocab_size"), f"the tokenizer may emit ids "
                       f"up to {tok.vocab_size - 1}, but '{name}' embeds only {vocab}",
                       f"set the tokenizer's vocab_size ≤ {vocab}, or raise the model's vocab_size")


def check_unused(ctx: Context) -> None:
    """Nodes no prediction depends on are dead weight (or a wiring mistake)."""
    g = ctx.graph
    if not g.predictions():
        return  # no heads at all: E-NO-HEADS says so once, rather than every node being "unused"
    unused = unused_nodes(g)
    for name in unused:
        ctx.report("W-UNUSED", g.path(name), f"'{name}' is not used by any head",
                   "connect it or remove it", severity=WARNING, key=True)
    read = {k for n in g.nodes for k in g.sources(n)}
    for name, cfg in g.nodes.items():
        for i, task in enumerate(getattr(cfg, "task_outputs", None) or ()):
            if name not in unused and f"{name}.{task}" not in read:
                ctx.report("W-UNUSED", g.path(name) + ("tasks", i), f"task output '{name}.{task}' is read by "
                           "no node: its gate is trained by nothing", f"read it (e.g. a head with `from: "
                           f"{name}.{task}`) or remove the task", severity=WARNING)


def check_training(ctx: Context) -> None:
    """Early stopping names a real metric."""
    es = ctx.spec.training.early_stopping
    if es is None or es.metric == "loss":
        return
    g = ctx.graph
    path = ("training", "early_stopping", "metric")
    head, _, metric = es.metric.partition("/")
    preds = g.predictions()
    if head not in preds:
        ctx.report("E-REF", path, f"no head or late fusion named '{head}'",
                   did_you_mean(head, preds) or "write `HEAD/METRIC` or `loss`")
    elif metric not in ("loss", *prediction_metrics(g, head)):
        reported = ["loss", *prediction_metrics(g, head)]
        near = did_you_mean(metric, reported)
        ctx.report("E-METRIC", path, f"'{head}' does not report '{metric}'",
                   (near + " " if near else "") + f"use one of: {', '.join(reported)}"
                   + ("" if near else f", or add '{metric}' to the metrics of '{head}'"))


def check_loss_weighting(ctx: Context) -> None:
    """A learned loss weighting needs several losses; GradNorm also a layer they all train."""
    from .graph import loss_predictions, shared_nodes

    lw = ctx.spec.training.loss_weighting
    if lw.type == "fixed":
        return
    path = ("training", "loss_weighting", "type")
    preds = [p for p in loss_predictions(ctx.graph) if ctx.graph.nodes[p].loss.weight > 0]
    if len(preds) < 2:
        ctx.report("E-LOSS-WEIGHTING", path, f"`{lw.type}` weights several losses against each other, but the "
                   f"spec has {len(preds)} loss" + ("" if len(preds) == 1 else "es") + " with a weight above 0",
                   "remove `loss_weighting` (fixed weights), or add heads with losses")
    elif lw.type == "gradnorm" and lw.layer is not None and lw.layer not in shared_nodes(ctx.graph):
        shared = shared_nodes(ctx.graph)
        where = ("training", "loss_weighting", "layer")
        if lw.layer not in ctx.graph.nodes:
            ctx.report("E-REF", where, f"unknown node '{lw.layer}'",
                       did_you_mean(lw.layer, shared or ctx.graph.nodes) or "name a node every loss reads")
        else:
            ctx.report("E-LOSS-WEIGHTING", where, f"'{lw.layer}' is not read by every loss ({', '.join(preds)}), "
                       "or has no trainable layer of its own to share",
                       "choose one of: " + ", ".join(shared) if shared else "leave `layer` out")
    elif lw.type == "gradnorm" and not shared_nodes(ctx.graph):
        ctx.report("E-LOSS-WEIGHTING", path, "gradnorm balances gradient norms on the last layer every loss "
                   f"trains, but the losses ({', '.join(preds)}) share no trainable encoder or fusion",
                   "read the heads from one shared encoder or fusion, or use `type: uncertainty` or `dwa`")


RULES = [check_late_labels, check_losses, check_metrics, check_squash, check_tokenizers, check_unused,
         check_training, check_loss_weighting]


def run_checks(ctx: Context, complete: bool = True) -> None:
    """Shape inference, then every rule (the whole-spec rules only when every node validated)."""
    infer_shapes(ctx)
    for rule in RULES:
        if rule in (check_unused, check_training, check_loss_weighting) and (not complete or ctx.graph.incomplete):
            continue
        if rule in (check_training, check_loss_weighting) and ctx.spec.training is None:
            continue
        rule(ctx)
