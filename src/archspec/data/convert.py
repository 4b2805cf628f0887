"""Column values → numpy arrays, with a :class:`~.problems.Problem` for every value that cannot be used.

Shared by :func:`~archspec.data.preflight.preflight` (which only collects the problems) and the
:class:`~archspec.data.preprocess.Preprocessor` (which uses the arrays), so the two never disagree.
Torch-free.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from .problems import Problem

_INT_RE = re.compile(r"^[+-]?\d+$")
_INT_FLOAT_RE = re.compile(r"^([+-]?\d+)\.0*$")
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}
_SPLIT_RE = re.compile(r"[|,;]")
_FIX = "fix the value or drop the row"


def is_missing(value) -> bool:
    """True for ``None``, NaN, ``pd.NA`` and ``NaT`` (lists and arrays are never missing)."""
    if value is None:
        return True
    if isinstance(value, (list, tuple, dict, np.ndarray)):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def label_key(value) -> str:
    """The text a label is matched by: ``1``, ``1.0``, ``"1"`` and ``"1.0"`` are all ``"1"``; strings are stripped.

    Example:
        >>> label_key(2.0), label_key(" pos "), label_key(3), label_key("4.0")
        ('2', 'pos', '3', '4')
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        text = value.strip()
        m = _INT_FLOAT_RE.match(text)  # an integer column with a gap is written as 1.0, 2.0, ...
        return m.group(1) if m else text
    return str(value)


def is_int_key(key: str) -> bool:
    """Whether a label key is an integer (``"3"``, ``"-1"``)."""
    return bool(_INT_RE.match(key))


def sort_keys(keys) -> list[str]:
    """Label names in a stable order: numerically when all are integers, else alphabetically."""
    keys = list(keys)
    if keys and all(is_int_key(k) for k in keys):
        return sorted(keys, key=int)
    return sorted(keys)


def _show(value, n: int = 60) -> str:
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= n else text[: n - 1] + "…"


# ---------------------------------------------------------------------------------------- numbers


def numbers(series: pd.Series, column: str, what: str = "value") -> tuple[np.ndarray, list[Problem]]:
    """A numeric column as float64; missing, non-numeric and infinite values are problems.

    Example:
        >>> import pandas as pd
        >>> v, probs = numbers(pd.Series([1, "x", float("inf")]), "a")
        >>> [p.code for p in probs]
        ['not-a-number', 'nonfinite']
    """
    if series.dtype == bool:
        return series.to_numpy(dtype=np.float64), []
    fast = _fast_numbers(series)
    if fast is not None:
        return fast, []
    num = pd.to_numeric(series, errors="coerce")
    arr = num.to_numpy(dtype=np.float64, na_value=np.nan)
    problems = []
    bad = ~np.isfinite(arr)
    if bad.any():
        raw = series.to_numpy(dtype=object)
        for i in np.flatnonzero(bad):
            row = series.index[i]
            if is_missing(raw[i]):
                problems.append(Problem("missing-value", f"missing {what} (empty or NaN)",
                                        "fill it in or drop the row: one NaN makes every weight NaN after one "
                                        "step", row, column))
            elif np.isnan(arr[i]):
                problems.append(Problem("not-a-number", f"{what} {_show(raw[i])} is not a number", _FIX, row, column))
            else:
                problems.append(Problem("nonfinite", f"{what} is {raw[i]!s} (not finite)",
                                        "replace it with a finite number or drop the row", row, column))
    return arr, problems


def _fast_numbers(series: pd.Series) -> np.ndarray | None:
    """The common case in one vectorised step: a numeric column, or text that Arrow's strict
    parser reads (``1.5``, ``-2``, ``1e3``), every value finite. ``None`` sends the column through
    :func:`numbers`' per-value path, which also words the problems. Per batch this is ~4× faster
    than ``pd.to_numeric`` on text, which is how CSV cells arrive (:mod:`.store`)."""
    if series.dtype.kind in "iuf":
        arr = series.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        import pyarrow as pa
        import pyarrow.compute as pc

        try:
            values = pa.array(series, from_pandas=True)
            if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
                return None
            arr = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):  # mixed or huge cells; text Arrow will not parse
            return None
    return arr if np.isfinite(arr).all() else None


_VEC_SPLIT_RE = re.compile(r"[,\s]+")


def _as_list(value, labels: bool = False):
    """A list from a list, an array or a bracketed string; raises ValueError otherwise.

    Strings are read as JSON first; failing that, the text between the brackets is split, which
    also reads what ``DataFrame.to_csv`` writes for Python lists (``['a', 'b']``) and numpy arrays
    (``[0.1 0.2]``).
    """
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            try:
                parsed = json.loads(text)
            except ValueError:
                inner = text[1:-1].strip()
                if not inner:
                    return []
                parts = _SPLIT_RE.split(inner) if labels else _VEC_SPLIT_RE.split(inner)
                parts = [p.strip().strip("'\"").strip() for p in parts]
                return parts if labels else [float(p) for p in parts]
            if isinstance(parsed, list):
                return parsed
        raise ValueError("not a list")
    raise ValueError("not a list")


def vectors(df: pd.DataFrame, columns: list[str], width: int, name: str,
            what: str = "vector") -> tuple[np.ndarray, list[Problem]]:
    """``(n, width)`` float64 from one list column (``columns == [c]``) or ``width`` numeric columns.

    A list column holds a list per row: a JSON string such as ``"[0.1, 0.2]"`` in CSV, a real list
    in Parquet or JSON Lines. Wrong lengths, non-numbers, NaN and inf are problems.
    """
    n = len(df)
    if len(columns) > 1 or (width == 1 and len(columns) == 1 and _scalar_column(df[columns[0]])):
        parts, problems = [], []
        for c in columns:
            a, p = numbers(df[c], c, what)
            parts.append(a)
            problems += p
        return np.stack(parts, axis=1) if parts else np.zeros((n, 0)), problems
    column = columns[0]
    out = np.zeros((n, width), dtype=np.float64)
    problems = []
    for i, (row, value) in enumerate(df[column].items()):
        if is_missing(value):
            problems.append(Problem("missing-value", f"missing {what}", f"give a list of {width} numbers for "
                                    f"{name}, or drop the row", row, column))
            continue
        try:
            vec = np.asarray(_as_list(value), dtype=np.float64)
        except (ValueError, TypeError):
            problems.append(Problem("vector", f"{what} {_show(value)} is not a list of numbers",
                                    f"write a JSON list of {width} numbers, e.g. [0.1, 0.2, ...]", row, column))
            continue
        if vec.ndim != 1 or vec.shape[0] != width:
            got = vec.shape[0] if vec.ndim == 1 else f"shape {vec.shape}"
            problems.append(Problem("vector-length", f"{what} has {got} values, expected {width}",
                                    f"every row needs exactly {width} values ({name} has width {width})", row, column))
            continue
        if not np.isfinite(vec).all():
            j = int(np.flatnonzero(~np.isfinite(vec))[0])
            problems.append(Problem("nonfinite", f"{what} holds {vec[j]!s} at position {j}",
                                    "replace non-finite values or drop the row", row, column))
            continue
        out[i] = vec
    return out, problems


def _scalar_column(series: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(series) or series.dtype == bool:
        return True
    first = next((v for v in series if not is_missing(v)), None)
    return not (isinstance(first, (list, tuple, np.ndarray)) or (isinstance(first, str) and first.strip().startswith("[")))


# ---------------------------------------------------------------------------------------- labels


def binary(series: pd.Series, column: str) -> tuple[np.ndarray, list[Problem]]:
    """0/1 labels as float64 from 0/1, true/false, yes/no (any case); anything else is a problem.

    Example:
        >>> import pandas as pd
        >>> binary(pd.Series(["yes", 0, True]), "y")[0].tolist()
        [1.0, 0.0, 1.0]
    """
    try:
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
    except TypeError:  # unhashable cells (lists): the per-value path words the problem
        codes, uniques = np.array([-1]), []
    if len(uniques) <= 8 and not (codes < 0).any():  # each distinct value read once (a batch has 2)
        values = np.asarray([_binary_value(v) for v in uniques], dtype=np.float64)
        if not np.isnan(values).any():
            return values[codes], []
    out = np.zeros(len(series), dtype=np.float64)
    problems = []
    for i, (row, value) in enumerate(series.items()):
        if is_missing(value):
            problems.append(Problem("missing-value", "missing label", "give 0 or 1, or drop the row", row, column))
            continue
        key = label_key(value).lower() if not isinstance(value, (bool, np.bool_)) else str(bool(value)).lower()
        key = {"1.0": "1", "0.0": "0", "1.": "1", "0.": "0"}.get(key, key)  # "1.0" as written by pandas
        if key in _TRUE:
            out[i] = 1.0
        elif key in _FALSE:
            out[i] = 0.0
        else:
            problems.append(Problem("binary", f"binary label {_show(value)} is not 0/1, true/false or yes/no",
                                    "use 0/1 (a target of 2 would silently train binary cross-entropy on "
                                    "nonsense)", row, column))
    return out, problems


def _binary_value(value) -> float:
    """1.0 / 0.0 for a value :func:`binary` reads as true / false, NaN otherwise."""
    key = label_key(value).lower() if not isinstance(value, (bool, np.bool_)) else str(bool(value)).lower()
    key = {"1.0": "1", "0.0": "0", "1.": "1", "0.": "0"}.get(key, key)
    return 1.0 if key in _TRUE else 0.0 if key in _FALSE else float("nan")


def class_keys(series: pd.Series, column: str) -> tuple[list, list[Problem]]:
    """The label of every row as a key (``None`` where missing, with a problem)."""
    keys, problems = [], []
    for row, value in series.items():
        if is_missing(value):
            keys.append(None)
            problems.append(Problem("missing-value", "missing label", "fill in the label or drop the row", row, column))
        else:
            keys.append(label_key(value))
    return keys, problems


def split_labels(text: str, separator: str | None) -> list[str]:
    """A delimited cell's labels: split on ``separator`` (on runs of whitespace when it is blank),
    or by default on any of ``|``, ``,`` and ``;``."""
    if separator is None:
        return [p.strip() for p in _SPLIT_RE.split(text)]
    if not separator.strip():
        return text.split()
    return [p.strip() for p in text.split(separator)]


def label_sets(series: pd.Series, column: str, separator: str | None = None) -> tuple[list, list[Problem]]:
    """The label set of every row: a list, a JSON list string or a delimited string (the head's
    ``separator``; by default any of ``|``, ``,`` and ``;``).

    An empty or missing cell is the empty set.

    Example:
        >>> import pandas as pd
        >>> label_sets(pd.Series(['["a", "b"]', "b|c", "", None, 3]), "t")[0]
        [['a', 'b'], ['b', 'c'], [], [], ['3']]
        >>> label_sets(pd.Series(["cheap durable", "cheap"]), "t", separator=" ")[0]
        [['cheap', 'durable'], ['cheap']]
    """
    sets, problems = [], []
    for row, value in series.items():
        if is_missing(value):
            sets.append([])
            continue
        try:
            if isinstance(value, (list, tuple, np.ndarray)) or (isinstance(value, str) and value.strip().startswith("[")):
                items = _as_list(value, labels=True)
                if any(isinstance(x, (list, dict)) for x in items):
                    raise ValueError("nested")
                labels = [label_key(x) for x in items if not is_missing(x)]
            elif isinstance(value, str):
                labels = split_labels(value, separator)
            else:
                labels = [label_key(value)]
        except (ValueError, TypeError):
            problems.append(Problem("multilabel", f"label set {_show(value)} is not a list of labels",
                                    'write a JSON list (["a", "b"]) or labels separated by | , or ;', row, column))
            sets.append([])
            continue
        sets.append(sorted({x for x in labels if x}, key=labels.index))
    return sets, problems


def fit_names(keys, size: int, declared, what: str, node: str, column: str) -> tuple[list[str], list[Problem]]:
    """Label names fitted on training keys when the spec gives only a count.

    Integers ``0 … size-1`` map to themselves; anything else maps to the sorted distinct labels
    (padded with ``<unused:i>`` placeholders up to ``size``). More distinct labels than ``size``
    is a problem. Declared names are returned unchanged.
    """
    if declared is not None:
        return list(declared), []
    distinct = sort_keys({k for k in keys if k is not None})
    spaced = [k for k in distinct if len(str(k).split()) > 1]
    if all(is_int_key(k) and 0 <= int(k) < size for k in distinct):
        return [str(i) for i in range(size)], []
    if len(distinct) > size:
        shown = ", ".join(distinct[:12]) + (", …" if len(distinct) > 12 else "")
        hint = f"set the count to {len(distinct)}, list the names, or fix the labels"
        if spaced and what == "labels":
            hint = (f"{len(spaced)} of them hold spaces ({spaced[0]!r}): if a cell lists labels separated by "
                    f"spaces, set `separator: \" \"` on {node.rsplit('.', 1)[0]}; else " + hint)
        return [], [Problem("classes", f"{len(distinct)} distinct {what} in the training data but {node} "
                            f"declares {size}: {shown}", hint, None, column)]
    if spaced and what == "labels":
        import warnings

        from ..errors import DataWarning

        warnings.warn(DataWarning(
            f"column '{column}': {len(spaced)} fitted labels of {node.rsplit('.', 1)[0]} hold spaces ({spaced[0]!r}) "
            f"— if a cell lists several labels separated by spaces, set `separator: \" \"` on the head"), stacklevel=2)
    return distinct + [f"<unused:{i}>" for i in range(len(distinct), size)], []


def unknown_label(key, names, declared: bool, what: str, node: str, row, column) -> Problem:
    """A label that is not in the label map (``what`` is ``class`` or ``label``)."""
    plural = "classes" if what == "class" else what + "s"
    shown = ", ".join(n for n in names if not n.startswith("<unused:"))[:200]
    parts = str(key).split()
    if what == "label" and len(parts) > 1 and all(p in names for p in parts):
        return Problem("label", f"{what} {key!r} is not one of the {plural} of {node} ({shown}), but its words are",
                       f"the cell lists labels separated by spaces: set `separator: \" \"` on "
                       f"{node.rsplit('.', 1)[0]}", row, column)
    if declared:
        return Problem("label", f"{what} {key!r} is not one of the {plural} declared in {node} ({shown})",
                       f"fix the label, or add it to {node}", row, column)
    return Problem("label", f"{what} {key!r} did not occur in the training data ({plural} learned there: {shown})",
                   f"declare the {plural} by name in {node}, or add training rows with {key!r}", row, column)
