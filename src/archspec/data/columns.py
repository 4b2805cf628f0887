"""What a spec reads from a data file: the columns of each input and the target of each prediction."""

from __future__ import annotations

from dataclasses import dataclass, replace

TARGET_KINDS = ("multiclass", "multilabel", "binary", "regression")


@dataclass(frozen=True)
class TargetSpec:
    """The labels one prediction (a head or a late fusion) is trained and evaluated on.

    Attributes:
        name: the prediction node.
        kind: ``multiclass`` (int64 ``(B,)``), ``multilabel`` (float ``(B, L)``), ``binary``
            (float ``(B,)``; binary heads and similarity heads trained with binary cross-entropy)
            or ``regression`` (float ``(B, outputs)``).
        column: the data column holding the labels.
        size: classes, labels or outputs (1 for binary).
        names: label names declared in the spec, or ``None`` when they are fitted on the data.
        source: the head whose label space this prediction uses (itself for a head; for a late
            fusion, the head its first member resolves to, so the fused classes line up).
    """

    name: str
    kind: str
    column: str
    size: int
    names: tuple | None
    source: str
    separator: str | None = None  # multilabel: how a delimited cell separates its labels (None: | , ;)

    def describe(self) -> str:
        """``heads.NAME`` or ``fusions.NAME``, as messages name the prediction."""
        return f"{'fusions' if self.source != self.name else 'heads'}.{self.name}"


def _sized(value) -> tuple[int, tuple | None]:
    if isinstance(value, (list, tuple)):
        return len(value), tuple(str(v) for v in value)
    return int(value), None


def head_target(name: str, cfg) -> TargetSpec | None:
    """The target of one head, or ``None`` for a head trained without labels (contrastive two towers)."""
    column = getattr(cfg, "target", None) or name
    t = cfg.type
    if t == "multiclass":
        size, names = _sized(cfg.classes)
        return TargetSpec(name, "multiclass", column, size, names, name)
    if t == "multilabel":
        size, names = _sized(cfg.labels)
        return TargetSpec(name, "multilabel", column, size, names, name, separator=cfg.separator)
    if t == "binary":
        return TargetSpec(name, "binary", column, 1, None, name)
    if t == "regression":
        return TargetSpec(name, "regression", column, int(cfg.outputs), None, name)
    if t == "similarity":
        if cfg.loss.type == "contrastive":
            return None  # every row is a positive pair; the other rows of the batch are negatives
        return TargetSpec(name, "binary", column, 1, None, name)
    return None


def prediction_targets(checked) -> dict[str, TargetSpec]:
    """Targets of every prediction (heads and late fusions) in graph order.

    A late fusion reads its own ``target`` column if set, else its first member's; its label space
    is its first member's.

    Example:
        >>> from archspec.pipeline import check_text
        >>> c = check_text("archspec: 1\\nname: m\\ninputs: {x: {type: numeric, columns: [a]}}\\n"
        ...                "heads: {y: {type: multiclass, from: x, classes: [a, b]}}\\n")
        >>> prediction_targets(c)["y"].column
        'y'
    """
    g = checked.graph
    out: dict[str, TargetSpec | None] = {}

    def resolve(name):
        if name in out:
            return out[name]
        cfg = g.nodes[name]
        if g.is_late(name):
            first = resolve(cfg.inputs[0]) if cfg.inputs else None
            out[name] = None if first is None else replace(first, name=name, column=cfg.target or first.column)
        else:
            out[name] = head_target(name, cfg)
        return out[name]

    for name in g.predictions():
        resolve(name)
    return {n: t for n in g.predictions() if (t := out.get(n)) is not None}


def input_columns(cfg) -> list[str]:
    """Columns an input reads as written in the spec (asks the input type's home in :mod:`.inputs`)."""
    from .inputs import input_data

    return input_data(cfg.type).spec_columns(cfg)


def prefixed(column: str, width: int) -> list[str]:
    """``[column_0, …, column_{width-1}]``: a vector spread over one column per value."""
    return [f"{column}_{i}" for i in range(width)]


def vector_layout(column: str, width: int, available) -> list[str] | None:
    """Where a vector of ``width`` values lives: ``[column]`` (a list per row), the prefixed columns, or ``None``."""
    available = set(available)
    if column in available:
        return [column]
    cols = prefixed(column, width)
    return cols if all(c in available for c in cols) else None
