"""Reading data files and splitting them deterministically (torch-free)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError

_COMPRESSION = (".gz", ".bz2", ".xz", ".zip", ".zst")
FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl"}


def table_format(path) -> str | None:
    """``csv``, ``tsv``, ``parquet`` or ``jsonl`` from the file name (compression suffixes skipped).

    Example:
        >>> table_format("train.csv.gz"), table_format("x.ndjson"), table_format("x.txt")
        ('csv', 'jsonl', None)
    """
    suffixes = [s.lower() for s in Path(str(path)).suffixes]
    while suffixes and suffixes[-1] in _COMPRESSION:
        suffixes.pop()
    return FORMATS.get(suffixes[-1]) if suffixes else None


def source_format(path: Path) -> str:
    """The format of a data file that exists (``csv``, ``tsv``, ``parquet``, ``jsonl``).

    Raises:
        DataError: an unknown extension, or no such file.
    """
    fmt = table_format(path)
    if fmt is None:
        raise DataError(f"{path}: unknown data format '{''.join(path.suffixes) or '(no extension)'}' — "
                        "use .csv, .tsv, .parquet or .jsonl/.ndjson (JSON Lines: one object per line)")
    if not path.is_file():
        raise DataError(f"{path}: data file not found — check the path (paths in a spec are relative to "
                        "the spec file)")
    return fmt


def read_table(path) -> pd.DataFrame:
    """Read a data file into a DataFrame whose index is the 0-based row position in the file.

    CSV (and TSV), Parquet and JSON Lines (``.jsonl`` / ``.ndjson``) are chosen by extension;
    ``.gz``/``.bz2``/``.xz``/``.zip``/``.zst`` compression is undone by pandas.

    Args:
        path: the data file.

    Returns:
        the rows, with a fresh ``RangeIndex`` (row numbers in messages derive from it).

    Raises:
        DataError: the file is missing, of an unknown format, unreadable, or has no rows.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp(); p = os.path.join(d, "t.csv")
        >>> _ = open(p, "w").write("a,b\\n1,x\\n2,y\\n")
        >>> read_table(p).shape
        (2, 2)
    """
    path = Path(path)
    fmt = source_format(path)
    try:
        if fmt in ("csv", "tsv"):
            sep = "," if fmt == "csv" else "\t"
            _reject_duplicate_header(path, sep)
            df = pd.read_csv(path, sep=sep)
        elif fmt == "parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_json(path, lines=True, dtype=False)  # keep JSON types: no string→int, no dates
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty — it needs a header line and at least one row") from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError, ImportError) as exc:
        what = {"csv": "CSV", "tsv": "TSV", "parquet": "Parquet", "jsonl": "JSON Lines"}[fmt]
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot be read as {what}: {first} — check that the file is complete "
                        "and in the format its extension says") from None
    if len(df) == 0:
        raise DataError(f"{path}: the file has no data rows — add rows below the header")
    df.columns = [str(c) for c in df.columns]
    return df.reset_index(drop=True)


def _reject_duplicate_header(path: Path, sep: str) -> None:
    # pandas renames a repeated column to `x.1` silently; a spec would then read the wrong one.
    first = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
    header = [str(c) for c in first.iloc[0].tolist()] if len(first) else []
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise DataError(f"{path}:1: column{'s' if len(dup) > 1 else ''} {', '.join(repr(c) for c in dup)} "
                        "appear more than once in the header — give every column a unique name")


def split_sizes(n_rows: int, validation_split: float) -> tuple[int, int]:
    """``(n_train, n_validation)`` when ``validation_split`` of ``n_rows`` is held out.

    At least one row is held out whenever ``validation_split > 0``.

    Example:
        >>> split_sizes(10, 0.2), split_sizes(3, 0.1), split_sizes(5, 0.0)
        ((8, 2), (2, 1), (5, 0))
    """
    if validation_split <= 0:
        return n_rows, 0
    n_val = min(n_rows, max(1, int(math.floor(n_rows * validation_split + 0.5))))
    return n_rows - n_val, n_val


_M64 = (1 << 64) - 1


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser, vectorised: stable across platforms and library versions."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x += np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def permutation(n: int, *key: int) -> np.ndarray:
    """A pseudo-random permutation of ``range(n)`` fixed by integer ``key`` (e.g. seed, epoch).

    Built from a hash of ``(key, row)`` rather than a library RNG, so the same key gives the same
    order on every machine and every numpy/torch version.

    Example:
        >>> bool((permutation(5, 1, 2) == permutation(5, 1, 2)).all()), sorted(permutation(5, 7).tolist())
        (True, [0, 1, 2, 3, 4])
    """
    h = np.zeros(1, dtype=np.uint64)
    for k in key:
        h = _mix(h ^ np.uint64(int(k) & _M64))
    keys = _mix(np.arange(n, dtype=np.uint64) ^ h)
    return np.argsort(keys, kind="stable")


def split(df: pd.DataFrame, validation_split: float, seed: int, *, file=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out ``validation_split`` of the rows, the same rows for the same ``seed`` every time.

    Both parts keep the file's row order and index, so messages name rows as in the file.

    Args:
        df: the training file as read by :func:`read_table`.
        validation_split: share of rows held out (``training.validation_split``).
        seed: ``training.seed``.
        file: the data file, named in the error message.

    Returns:
        ``(train, validation)``; ``validation`` is empty when ``validation_split`` is 0.

    Raises:
        DataError: holding out rows would leave fewer than 2 for training (or none for validation).

    Example:
        >>> import pandas as pd
        >>> tr, va = split(pd.DataFrame({"x": range(10)}), 0.2, seed=0)
        >>> len(tr), len(va), sorted(tr.index.tolist() + va.index.tolist()) == list(range(10))
        (8, 2, True)
    """
    n_train, n_val = split_sizes(len(df), validation_split)
    if validation_split > 0 and (n_train < 2 or n_val < 1):
        n = len(df)
        raise DataError(f"{file or '<training data>'}: only {n} row{'s' if n != 1 else ''}: holding out "
                        f"validation_split {validation_split:g} leaves {n_train} for training and {n_val} for "
                        "validation — add rows (training needs at least 2), give a validation file, or set "
                        "`training.validation_split: 0`")
    order = permutation(len(df), seed, 0x5B17)
    held = np.zeros(len(df), dtype=bool)
    held[order[:n_val]] = True
    return df[~held], df[held]


#: the same function under the name ``archspec.train`` imports
split_frame = split


def split_positions(n_rows: int, validation_split: float, seed: int, *, file=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`split` on row positions: ``(train, validation)``, each in file order.

    The same rows as :func:`split` holds out for a table of ``n_rows`` rows.

    Example:
        >>> tr, va = split_positions(10, 0.2, seed=0)
        >>> len(tr), len(va), sorted(tr.tolist() + va.tolist()) == list(range(10))
        (8, 2, True)
    """
    n_train, n_val = split_sizes(n_rows, validation_split)
    if validation_split > 0 and (n_train < 2 or n_val < 1):
        raise DataError(f"{file or '<training data>'}: only {n_rows} row{'s' if n_rows != 1 else ''}: holding out "
                        f"validation_split {validation_split:g} leaves {n_train} for training and {n_val} for "
                        "validation — add rows (training needs at least 2), give a validation file, or set "
                        "`training.validation_split: 0`")
    held = np.zeros(n_rows, dtype=bool)
    held[permutation(n_rows, seed, 0x5B17)[:n_val]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)
