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
from .columns import prediction_targets, prefixed, vector_layout
from .inputs import Context, input_data
from .problems import Problem, data_error, raise_if

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
    problems += _value_problems(checked, df, data_dir, targets, preprocessor)
    return problems


def _value_problems(checked, df: pd.DataFrame, data_dir, targets: dict, preprocessor=None) -> list[Problem]:
    """Row-level problems of a chunk: each input's own check, then the labels."""
    problems: list[Problem] = []
    present = set(df.columns)
    for name, cfg in checked.spec.inputs.items():
        home = input_data(cfg.type)
        if home.columns(cfg, present) is not None:
            problems += home.check(cfg, df, Context(f"inputs.{name}", data_dir, checked.base_dir))
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


def missing_columns(checked, df, targets, *, inputs: bool = True) -> list[Problem]:
    """A problem for every column the spec reads (inputs, and the ``targets`` given) that ``df`` lacks.

    ``df`` is a DataFrame or anything with ``.columns`` (a :class:`~.store.Table`).
    """
    present = set(df.columns)
    needed: dict[str, list[str]] = {}
    notes: dict[str, str] = {}
    for name, cfg in (checked.spec.inputs.items() if inputs else ()):
        for col, note in input_data(cfg.type).missing(cfg, present):
            needed.setdefault(col, []).append(f"inputs.{name}")
            if note:
                notes[col] = note
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


def _size(spec, df, split: str, n: int | None = None) -> list[Problem]:
    n = len(df) if n is None else n
    if n == 0:
        return [Problem("too-few-rows", "the data has no rows", "add rows")]
    if split == "train" and n < 2:
        return [Problem("too-few-rows", f"only {n} row: training needs at least 2", "add rows")]
    return []


#: problems kept in memory by a streaming pre-flight (the rest are counted)
KEEP_PROBLEMS = 1000


def preflight_table(checked, table, rows=None, split: str = "train", preprocessor=None, *,
                    targets: bool | None = None, on_bad_row: str = "error", chunk_rows: int = 4096,
                    bad_lines: bool = True, log=None) -> list[int]:
    """:func:`preflight` for a :class:`~.store.Table`, streamed chunk by chunk (memory stays flat).

    Columns come from the table's schema; values are checked ``chunk_rows`` at a time; image files
    get a header check. File-level problems (missing columns, too few rows, more labels than a
    head declares) always raise. Row-level problems raise too with ``on_bad_row: error``; with
    ``skip`` they are counted and their rows returned, to be left out.

    Args:
        checked: the checked spec.
        table: the data file (:func:`~.store.open_table`).
        rows: positions to check (a split); default every row.
        split: as in :func:`preflight`.
        preprocessor: a fitted preprocessor, to check labels against its label maps.
        targets: check the label columns (default: for every split but ``predict``).
        on_bad_row: ``error`` or ``skip`` (``training.on_bad_row``).
        chunk_rows: rows read per chunk.
        bad_lines: also report the lines the reader could not read (once per file: ``False`` for
            the validation rows held out of the training file).
        log: where to say how many rows will be skipped.

    Returns:
        the file rows (0-based) that have problems (empty with ``error``, which raises instead).

    Raises:
        DataError: every problem (at most :data:`KEEP_PROBLEMS` listed, all counted).
    """
    import numpy as np

    checked = load_spec(checked)
    file = str(table.source)
    data_dir = Path(file).resolve().parent
    if targets is None:
        targets = split != "predict"
    specs = prediction_targets(checked) if targets else {}
    n = table.num_rows if rows is None else len(rows)
    fatal = missing_columns(checked, table, specs) + _size(checked.spec, None, split, n)
    raise_if(fatal, file, split)
    kept: list[Problem] = []
    total = 0
    bad_rows: set[int] = set()
    positions = np.arange(table.num_rows) if rows is None else np.asarray(rows)
    bad_lines = list(table.bad_rows) if bad_lines else []
    # the label maps fitted on the whole split: distinct keys are collected across chunks
    count_only = {name: set() for name, t in specs.items()
                  if t.kind in ("multiclass", "multilabel") and t.names is None
                  and (preprocessor is None or preprocessor.label_names(name) is None)}
    unlabelled = {name: t for name, t in specs.items() if name not in count_only}
    for df in table.chunks(positions, _columns_read(checked, table, specs), chunk_rows):
        probs = _value_problems(checked, df, data_dir, unlabelled, preprocessor)
        for name, keys in count_only.items():
            t = specs[name]
            if t.column in df.columns:
                if t.kind == "multiclass":
                    ks, p = convert.class_keys(df[t.column], t.column)
                    keys.update(k for k in ks if k is not None)
                else:
                    sets, p = convert.label_sets(df[t.column], t.column, t.separator)
                    keys.update(k for s in sets for k in s)
                probs += p
        total += len(probs)
        bad_rows.update(p.row for p in probs if p.row is not None)
        kept += probs[: max(0, KEEP_PROBLEMS - len(kept))]
    seen = set()
    for name, keys in count_only.items():
        t = specs[name]
        if (t.column, t.kind, t.size) in seen:
            continue
        seen.add((t.column, t.kind, t.size))
        field = "classes" if t.kind == "multiclass" else "labels"
        node = t.describe() if t.source == t.name else f"heads.{t.source}"
        fatal += convert.fit_names(sorted(keys), t.size, None, field, f"{node}.{field}", t.column)[1]
    if bad_lines:
        bad_rows.update(p.row for p in bad_lines if p.row is not None)
        total += len(bad_lines)
        kept = bad_lines[:KEEP_PROBLEMS] + kept
    raise_if(fatal, file, split)
    if total and on_bad_row != "skip":
        err = data_error(kept, file, split)
        if total > len(kept):
            err.args = (str(err) + f"\n({total} problems in all; {len(kept)} kept for this list)",)
        raise err
    if total and log is not None:
        log(f"{file}: skipping {len(bad_rows)} {split} row{'s' if len(bad_rows) != 1 else ''} with "
            f"problems (training.on_bad_row: skip), e.g. {kept[0].render(file)}")
    return sorted(bad_rows)


def _columns_read(checked, table, specs) -> list[str]:
    cols = []
    for cfg in checked.spec.inputs.values():
        cols += input_data(cfg.type).columns(cfg, table.columns) or []
    for t in specs.values():
        cols += (vector_layout(t.column, t.size, table.columns) or []) if t.kind == "regression" else [t.column]
    return list(dict.fromkeys(c for c in cols if c in set(table.columns)))
