"""Check a data file against a spec before any training step (torch-free).

Every problem is collected, then one :class:`~archspec.errors.DataError` (exit code 3) lists them
as ``file:row:column: what — what to do``: missing columns (with close names), too few rows, labels
outside the declared (or fitted) classes, NaN/inf and non-numbers in numeric and vector inputs,
wrong vector lengths, unknown multilabel labels, and missing, unreadable or truncated images.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import did_you_mean
from ..pipeline import load_spec
from . import convert
from .columns import input_columns, prediction_targets, prefixed, vector_layout
from .images import check_images
from .problems import Problem, raise_if

SPLITS = ("train", "validation", "test", "evaluate", "predict")


def preflight(checked, df: pd.DataFrame, file, split: str = "train", preprocessor=None,
              data_dir=None, *, targets: bool | None = None) -> None:
    """Check that ``df`` (read from ``file``) holds what the spec needs, before training.

    Args:
        checked: the checked spec (a :class:`~archspec.pipeline.Checked`, a path or YAML text).
        df: the file as read by :func:`~archspec.data.read_table` (index = row position in the file).
        file: the data file, named in messages; images resolve against its directory.
        split: ``train``, ``validation``, ``test`` (or ``evaluate``), or ``predict`` (no labels
            needed). Training rows must number at least 2 (the split that holds out validation
            rows checks its own sizes: :func:`~archspec.data.split`).
        preprocessor: a fitted :class:`~archspec.data.Preprocessor`, to also check that labels occur
            in the label maps fitted on the training split.
        data_dir: directory image paths are relative to (default: ``file``'s directory).
        targets: check the label columns (default: for every split but ``predict``).

    Raises:
        DataError: with every problem found (``err.problems`` holds them as :class:`Problem`).

    Example:
        >>> import pandas as pd
        >>> spec = ("archspec: 1\\nname: m\\ninputs: {x: {type: numeric, columns: [a]}}\\n"
        ...         "heads: {y: {type: regression, from: x}}\\n")
        >>> preflight(spec, pd.DataFrame({"a": [1.0, 2, 3], "y": [0.0, 1, 2]}), "d.csv")
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    checked = load_spec(checked)
    raise_if(find_problems(checked, df, file, split, preprocessor, data_dir, targets=targets), str(file), split)


def find_problems(checked, df: pd.DataFrame, file, split: str = "train", preprocessor=None,
                  data_dir=None, *, targets: bool | None = None) -> list[Problem]:
    """The problems :func:`preflight` would raise, as a list (empty when the data is fine)."""
    spec = checked.spec
    data_dir = Path(file).parent if data_dir is None else Path(data_dir)
    if targets is None:
        targets = split != "predict"
    targets = prediction_targets(checked) if targets else {}
    problems = missing_columns(checked, df, targets) + _size(spec, df, split)
    present = set(df.columns)
    for name, cfg in spec.inputs.items():
        node = f"inputs.{name}"
        if cfg.type == "numeric":
            for c in cfg.columns:
                if c in present:
                    problems += convert.numbers(df[c], c, f"{node} value")[1]
        elif cfg.type == "vector":
            cols = vector_layout(cfg.column, cfg.width, present)
            if cols:
                problems += convert.vectors(df, cols, cfg.width, node)[1]
        elif cfg.type == "image" and cfg.column in present:
            problems += check_images(df[cfg.column], cfg.column, data_dir, node)
    seen_targets = set()
    for t in targets.values():
        key = (t.column, t.kind, t.names, t.size)
        if key in seen_targets:  # several predictions read one column the same way: check it once
            continue
        seen_targets.add(key)
        fitted = preprocessor.label_names(t.name) if preprocessor is not None and t.kind in (
            "multiclass", "multilabel") else None
        problems += target_problems(t, df, fitted)
    return problems


def target_problems(t, df: pd.DataFrame, fitted=None) -> list[Problem]:
    """Problems with the labels of one prediction (its column must be present)."""
    node = t.describe() if t.source == t.name else f"heads.{t.source}"
    if t.kind == "regression":
        cols = vector_layout(t.column, t.size, df.columns)
        return convert.vectors(df, cols, t.size, node, "target")[1] if cols else []
    if t.column not in df.columns:
        return []
    series = df[t.column]
    if t.kind == "binary":
        return convert.binary(series, t.column)[1]
    what, field = ("class", "classes") if t.kind == "multiclass" else ("label", "labels")
    if t.kind == "multiclass":
        keys, problems = convert.class_keys(series, t.column)
        rows = [(row, [k]) for row, k in zip(series.index, keys) if k is not None]
    else:
        sets, problems = convert.label_sets(series, t.column, t.separator)
        rows = list(zip(series.index, sets))
    where = f"{node}.{field}"
    names = t.names or fitted
    if names is None:  # only a count is declared: the distinct labels must fit in it
        keys = [k for _, ks in rows for k in ks]
        return problems + convert.fit_names(keys, t.size, None, field, where, t.column)[1]
    known = set(names)
    for row, ks in rows:
        problems += [convert.unknown_label(k, names, t.names is not None, what, where, row, t.column)
                     for k in ks if k not in known]
    return problems


def missing_columns(checked, df: pd.DataFrame, targets) -> list[Problem]:
    """A problem for every column the spec reads (inputs, and the ``targets`` given) that ``df`` lacks."""
    present = set(df.columns)
    needed: dict[str, list[str]] = {}
    notes: dict[str, str] = {}
    for name, cfg in checked.spec.inputs.items():
        if cfg.type == "vector":
            if vector_layout(cfg.column, cfg.width, present) is None:
                needed.setdefault(cfg.column, []).append(f"inputs.{name}")
                notes[cfg.column] = _prefix_note(cfg.column, cfg.width, present)
            continue
        for c in input_columns(cfg):
            if c not in present:
                needed.setdefault(c, []).append(f"inputs.{name}")
    for t in targets.values():
        if t.kind == "regression":
            if vector_layout(t.column, t.size, present) is None:
                needed.setdefault(t.column, []).append(t.describe())
                if t.size > 1:
                    notes[t.column] = _prefix_note(t.column, t.size, present)
        elif t.column not in present:
            needed.setdefault(t.column, []).append(t.describe())
    problems = []
    columns = list(df.columns)
    for col, users in needed.items():
        hint = did_you_mean(col, columns)
        if not hint:
            shown = ", ".join(columns[:15]) + (", …" if len(columns) > 15 else "")
            hint = f"the file has: {shown}"
        if users and all(u.startswith(("heads.", "fusions.")) for u in users):
            hint += f" (set `target:` on {users[0]} if its labels are in another column)"
        problems.append(Problem("missing-column", f"column '{col}' is missing (read by {', '.join(users)})"
                                + notes.get(col, ""), hint, None, col))
    return problems


def _prefix_note(column: str, width: int, present) -> str:
    cols = prefixed(column, width)
    have = [c for c in cols if c in present]
    if not have:
        return f"; neither is {cols[0]}…{cols[-1]}"
    lost = [c for c in cols if c not in present]
    return f"; of {cols[0]}…{cols[-1]}, {len(lost)} are missing ({', '.join(lost[:5])}{', …' if len(lost) > 5 else ''})"


def _size(spec, df: pd.DataFrame, split: str) -> list[Problem]:
    n = len(df)
    if n == 0:
        return [Problem("too-few-rows", "the data has no rows", "add rows")]
    if split == "train" and n < 2:
        return [Problem("too-few-rows", f"only {n} row: training needs at least 2", "add rows")]
    return []
