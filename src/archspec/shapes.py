"""Static shapes: what every node of a spec outputs, known before any weight exists.

A :class:`Shape` is the per-example shape (the batch dimension ``B`` is implicit) plus what the
values mean, so the checker can tell token ids from float features and logits from
probabilities. A dimension of ``None`` is *deferred*: it is only known once the model is built
(e.g. a hub model whose config is not available offline).
"""

from __future__ import annotations

from dataclasses import dataclass

# What a tensor holds. The checker matches these against what each component accepts.
TOKENS = "tokens"  # int64 token ids (B, T), with an attention mask
IMAGE = "image"  # float pixels (B, C, H, W)
FEATURES = "features"  # float feature vectors (B, D)
INDEX = "index"  # int64 category index (B,)
LOGITS = "logits"  # unnormalised class scores (B, C)
PROBS = "probs"  # probabilities in [0, 1] (B, C)
SCORE = "score"  # a similarity score (B,)
VALUES = "values"  # regression outputs (B, D)
SEQUENCE = "sequence"  # float vectors per position (B, T, D), with a padding mask "<node>.mask" (B, T)
AUDIO = "audio"  # float32 mono waveform (B, samples) at the input's sample rate
TASKS = "tasks"  # one feature vector per task (B, K, D): read one task's as "<node>.<task>" (B, D)


@dataclass(frozen=True)
class Shape:
    """Per-example shape of one node's output.

    Attributes:
        kind: what the values are (``tokens``, ``image``, ``features``, ``index``, ``logits``,
            ``probs``, ``score``, ``values``, ``sequence``, ``tasks``).
        dims: dimensions after the batch; ``None`` marks a dimension deferred to build time.
        dtype: ``float32`` or ``int64``.
        range: for scores, the value range (e.g. ``(-1.0, 1.0)`` for a raw cosine), else ``None``.
    """

    kind: str
    dims: tuple = ()
    dtype: str = "float32"
    range: tuple | None = None

    @property
    def width(self):
        """Last dimension (the feature width), or ``None`` when deferred or scalar."""
        return self.dims[-1] if self.dims else None

    @property
    def known(self) -> bool:
        return all(d is not None for d in self.dims)

    def batch_shape(self) -> str:
        """``(B, 512)``-style text, ``?`` for deferred dimensions."""
        dims = ", ".join("?" if d is None else str(d) for d in self.dims)
        return f"(B, {dims})" if dims else "(B,)"

    def __str__(self) -> str:
        return f"{self.batch_shape()} {self.kind}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "shape": ["B", *self.dims], "dtype": self.dtype}


def infer_shapes(ctx) -> None:
    """Shape of every node into ``ctx.shapes``, in topological order; modality mismatches reported on
    the edge (``ctx`` is a :class:`archspec.checks.Context`)."""
    g = ctx.graph
    for name in g.order:
        cfg = g.nodes[name]
        ins = [ctx.shapes.get(s) for s in g.sources(name)]
        if any(s is None for s in ins) or len(ins) != len(cfg.references()):
            continue  # upstream already broken and reported
        if not _modalities_ok(ctx, name, cfg, ins):
            continue
        shape = cfg.infer(ins, ctx.at(g.path(name)))
        if shape is None:  # the node reported why it has no shape (e.g. a member run that is missing)
            continue
        ctx.shapes[name] = shape
        for task in getattr(cfg, "task_outputs", None) or ():  # what `node.task` gives: (B, D) features
            ctx.shapes[f"{name}.{task}"] = Shape(FEATURES, shape.dims[1:])


def _modalities_ok(ctx, name: str, cfg, ins: list[Shape]) -> bool:
    g = ctx.graph
    ok = True
    for (rel, ref), shape in zip(cfg.references(), ins):
        if shape.kind in cfg.accepts:
            continue
        ok = False
        if g.is_late(name):
            continue  # a member without class probabilities: check_late_labels says so, in its terms
        path = g.path(name) + rel
        src = g.nodes.get(ref.split(".")[0])
        if shape.kind == SEQUENCE and FEATURES in cfg.accepts:
            ctx.report("E-SEQUENCE", path, f"'{ref}' gives a sequence {shape.batch_shape()} (one vector per "
                       f"position), but {cfg.type} reads one feature vector per example",
                       f"set {_pool_hint(src)} on '{ref}', or read it with a `cross_attention` fusion")
        elif SEQUENCE in cfg.accepts and shape.kind == FEATURES and _pool_hint(src, none=True):
            ctx.report("E-SEQUENCE", path, f"{cfg.type} attends over a sequence, but '{ref}' pools its output "
                       f"to one vector {shape.batch_shape()}", f"set {_pool_hint(src, none=True)} on '{ref}' "
                       "to keep one vector per position")
        elif TOKENS in cfg.accepts and shape.kind == FEATURES:
            ctx.report("E-FLOAT-IDS", path, f"'{ref}' gives float features {shape.batch_shape()}, but "
                       f"{cfg.type} reads token ids", "read a `text` input: it tokenizes and gives int64 ids "
                       "with an attention mask (never feed token ids through a float input)")
        else:
            wants = " or ".join(sorted(cfg.accepts))
            fix = {TOKENS: "a `text` input", INDEX: "a `categorical` input", FEATURES: "an input, "
                   "encoder or early fusion giving feature vectors", "image": "an `image` input",
                   AUDIO: "an `audio` input"}
            ctx.report("E-MODALITY", path, f"{cfg.type} reads {wants}, but '{ref}' gives {shape}",
                       "connect " + " or ".join(fix.get(k, k) for k in sorted(cfg.accepts)))
    return ok


def _pool_hint(cfg, none: bool = False) -> str:
    """The setting that pools (or, ``none``, keeps) the sequence of an encoder that can give one."""
    kind = getattr(cfg, "type", None)
    key = {"transformer": "pooling", "embedding_bag": "pooling", "cnn": "global_pool"}.get(kind)
    if key is None:
        return "" if none else "pool it upstream"
    if none:
        return f"`{key}: none`"
    return f"`{key}: {'avg' if kind == 'cnn' else 'mean'}`"
