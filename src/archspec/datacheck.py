"""``archspec validate --data``: the data files' headers checked against the spec, torch-free and fast.

Only the header and the first rows are read (:data:`ROWS`). Every problem is a diagnostic located
at the spec field that names the column (``inputs.title.column``), so it shows in an editor, in
``--format github`` and in SARIF like any other spec problem; the message names the data file.

Checks: every column an input reads exists (a did-you-mean against the header); every label
column exists; numeric columns (numeric inputs, regression targets) hold numbers in the first
rows; image columns name files that exist (first rows, relative to the data file).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from .errors import ERROR, NOTE, Diagnostic, did_you_mean, sort_key

ROWS = 50  # rows read from each file: enough to catch a wrong column, cheap on any file
_COMPRESSION = {".gz", ".bz2", ".xz", ".zip", ".zst"}
_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
            ".ndjson": "jsonl"}


class _Unreadable(Exception):
    pass


def head(path: Path, rows: int = ROWS):
    """The first ``rows`` rows of a data file as a DataFrame (pandas/pyarrow, no torch).

    Raises:
        _Unreadable: unknown format or a file that does not parse.
    """
    import pandas as pd

    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in _COMPRESSION:
        suffixes.pop()
    fmt = _FORMATS.get(suffixes[-1]) if suffixes else None
    try:
        if fmt in ("csv", "tsv"):
            return pd.read_csv(path, nrows=rows, sep="\t" if fmt == "tsv" else ",")
        if fmt == "jsonl":
            return pd.read_json(path, lines=True, nrows=rows)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            batch = next(pf.iter_batches(batch_size=rows), None)
            return batch.to_pandas() if batch is not None else pf.schema_arrow.empty_table().to_pandas()
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise _Unreadable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    except Exception as exc:  # noqa: BLE001 - pandas/pyarrow parser errors have many types
        raise _Unreadable(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    raise _Unreadable(f"unknown data format '{''.join(path.suffixes) or '(no extension)'}' — use .csv, .tsv, "
                      ".parquet or .jsonl")


def _reads(checked):
    """``(yaml path, column, what)`` for every column the spec reads; ``what`` is ``numeric``,
    ``image``, ``vector:<width>`` or ``any``."""
    spec = checked.spec
    for name, cfg in spec.inputs.items():
        t = cfg.type
        if t == "numeric":
            for i, col in enumerate(cfg.columns):
                yield ("inputs", name, "columns", i), col, "numeric"
        elif t == "image":
            yield ("inputs", name, "column"), cfg.column, "image"
        elif t == "vector":
            yield ("inputs", name, "column"), cfg.column, f"vector:{cfg.width}"
        elif hasattr(cfg, "column"):
            yield ("inputs", name, "column"), cfg.column, "any"
    for name, cfg in spec.heads.items():
        if cfg.type == "similarity" and cfg.loss.type == "contrastive":
            continue  # in-batch negatives: no label column
        path = ("heads", name, "target") if cfg.target else ("heads", name)
        yield path, cfg.target or name, "numeric" if cfg.type == "regression" else "label"
    for name, cfg in spec.fusions.items():
        if cfg.type == "late" and cfg.target:
            yield ("fusions", name, "target"), cfg.target, "label"


def _number(v) -> bool:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return True  # missing values are the data pre-flight's business (it reports them by row)
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    try:
        float(str(v))
        return True
    except ValueError:
        return False


def data_files(checked, given=None) -> list[tuple[str, Path | None]]:
    """``(label, path)`` of the files to check: ``given``, or the spec's ``training.data`` files."""
    if given is not None:
        return [("--data", Path(given))]
    data = checked.spec.training.data
    base = checked.base_dir or Path.cwd()
    out = []
    for split in ("train", "validation", "test"):
        p = getattr(data, split)
        if p:
            path = Path(p).expanduser()
            out.append((split, path if path.is_absolute() else _short(base / path)))
    return out


def check_data(checked, given=None) -> list[Diagnostic]:
    """Diagnostics for the data files of a valid spec (see the module docstring)."""
    smap_file = checked.file
    smap = getattr(checked, "smap", None)
    out: list[Diagnostic] = []

    def report(code, path, message, hint, severity=ERROR):
        line, col = smap.locate(path) if smap is not None else (0, 0)
        out.append(Diagnostic(code, severity, tuple(path), message, hint, smap_file, line, col))

    for split, path in data_files(checked, given):
        where = ("training", "data", split) if split != "--data" else ()
        if not path.is_file():
            if split == "--data":
                report("E-DATA-FILE", (), f"data file {path} not found", "check the path given to --data")
            else:
                report("N-DATA-MISSING", where, f"data file {path} not found: not checked",
                       "prepare the data (e.g. `archspec data prepare`) or fix the path, relative to the spec file",
                       severity=NOTE)
            continue
        try:
            df = head(path)
        except _Unreadable as exc:
            report("E-DATA-FILE", where, f"cannot read {path}: {exc}", "check the file's format and extension")
            continue
        header = [str(c) for c in df.columns]
        for yaml_path, col, what in _reads(checked):
            if what.startswith("vector:"):
                width = int(what.split(":")[1])
                if col in header or all(f"{col}_{i}" in header for i in range(width)):
                    continue
                report("E-DATA-COLUMN", yaml_path, f"{path.name} has no column '{col}' (nor {col}_0 … "
                       f"{col}_{width - 1})", did_you_mean(col, header) or f"columns: {_cols(header)}")
                continue
            if col not in header:
                what_col = "label column" if what == "label" or yaml_path[0] != "inputs" else "column"
                report("E-DATA-COLUMN", yaml_path, f"{path.name} has no {what_col} '{col}'",
                       did_you_mean(col, header) or f"columns: {_cols(header)}")
                continue
            if what == "numeric":
                bad = next(((i, v) for i, v in enumerate(df[col].tolist()) if not _number(v)), None)
                if bad is not None:
                    report("E-DATA-TYPE", yaml_path, f"{path.name} row {bad[0] + 1}: column '{col}' holds "
                           f"{str(bad[1])[:40]!r}, not a number", "fix the data, or read the column as "
                           "`categorical` / `text`")
            elif what == "image":
                base = path.resolve().parent
                for i, v in enumerate(df[col].tolist()):
                    if not isinstance(v, str) or not v:
                        continue
                    p = Path(v).expanduser()
                    p = p if p.is_absolute() else base / p
                    if not p.is_file():
                        report("E-DATA-IMAGE", yaml_path, f"{path.name} row {i + 1}: image '{v}' in column "
                               f"'{col}' does not exist (looked in {p.parent})", "image paths are relative "
                               "to the data file")
                        break
    return out


def _short(path: Path) -> Path:
    """``path`` normalised, relative to the current directory when it lies below it."""
    import os

    norm = Path(os.path.normpath(path))
    try:
        return norm.relative_to(Path.cwd())
    except ValueError:
        return norm


def _cols(header: list[str]) -> str:
    return ", ".join(header[:12]) + (f", … ({len(header)} in all)" if len(header) > 12 else "")


def with_data_checks(checked, given=None):
    """``checked`` with the data diagnostics added (only for a spec that is otherwise valid)."""
    if checked.spec is None or checked.errors:
        return checked
    diags = check_data(checked, given)
    return replace(checked, diagnostics=sorted(checked.diagnostics + diags, key=sort_key))
