"""Data files read lazily: every table becomes a memory-mapped Arrow file, converted once and cached.

``open_table(path)`` converts a CSV/TSV, JSON Lines or Parquet file into an uncompressed Arrow IPC
file the first time it is read, streaming (a chunk of rows at a time, so converting a file larger
than memory is fine), and keeps it in the cache directory under the SHA-256 of the source file's
bytes. Later reads (every epoch, every worker process, every later run on the same file) memory-map
that file: taking the rows of one batch touches only their pages, and the operating system, not the
Python heap, holds them. This is what Hugging Face ``datasets`` does, for the same reasons: random
access by row (exact shuffles, exact resume) at the cost of a one-time conversion.

**Cache directory**: ``$ARCHSPEC_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/archspec`` (default
``~/.cache/archspec``); tables live in its ``tables/`` folder as ``<sha256>-<format>-v<N>.arrow``
plus a ``.json`` sidecar (row count, rows the reader had to skip). Deleting the folder is always safe
(``archspec data clear-cache`` does it); a changed source file has a new hash and is converted again.

**Cell values.** CSV/TSV and JSON Lines cells are stored as text (``null`` when missing; JSON lists and
objects as their JSON text, ``true``/``false`` for booleans), so one odd value can never change a
column's type halfway through a file; the input types convert values per batch and report the ones
they cannot use with their row. Parquet columns keep their types. CSV lines with more fields than
the header are skipped by the reader and reported with their line (``Table.bad_rows``); a line with
fewer fields reads as missing values in the last columns, which the pre-flight reports.

Torch-free.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .problems import Problem
from .tables import _reject_duplicate_header, source_format

#: bump when the stored layout changes, so old cache files are ignored (and can be cleared)
CACHE_VERSION = 1
#: rows converted per chunk (bounded memory while converting)
CHUNK_ROWS = 65_536
_SKIPPED_LINE = re.compile(r"Skipping line (\d+): (.*)")


def cache_dir() -> Path:
    """The cache directory (see the module docstring); not created here."""
    env = os.environ.get("ARCHSPEC_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "archspec"


def clear_cache() -> tuple[Path, int]:
    """Delete every cached table; returns ``(directory, files removed)``."""
    d = cache_dir() / "tables"
    n = sum(1 for p in d.iterdir() if p.is_file()) if d.is_dir() else 0
    shutil.rmtree(d, ignore_errors=True)
    return d, n


def file_hash(path) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB pieces)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Table:
    """A data file as a memory-mapped Arrow table; rows are addressed by position (0-based).

    Attributes:
        source: the data file (named in messages).
        path: the cached Arrow file.
        num_rows: rows the table holds (the file's rows less ``bad_rows``).
        columns: column names, in file order.
        bad_rows: CSV lines the reader could not split into the header's columns, as problems.
    """

    source: Path
    path: Path
    num_rows: int
    columns: list[str]
    bad_rows: list[Problem] = field(default_factory=list)
    _skipped: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _arrow: object = field(default=None, repr=False)
    _pid: int = field(default=-1, repr=False)

    def arrow(self):
        """The ``pyarrow.Table`` (memory-mapped; opened once per process, so safe after ``fork``)."""
        if self._arrow is None or self._pid != os.getpid():
            import pyarrow as pa

            with pa.memory_map(str(self.path), "r") as src:
                self._arrow = pa.ipc.open_file(src).read_all()
            self._pid = os.getpid()
        return self._arrow

    def __getstate__(self):
        return {**self.__dict__, "_arrow": None, "_pid": -1}

    def row_ids(self, positions) -> np.ndarray:
        """The rows as the file numbers them (0-based data rows): positions shifted past skipped lines."""
        pos = np.asarray(positions, dtype=np.int64)
        if not len(self._skipped):
            return pos
        # the k-th kept row sits after every skipped row b_j with b_j - j <= k
        return pos + np.searchsorted(self._skipped - np.arange(len(self._skipped)), pos, side="right")

    def take(self, positions, columns=None) -> pd.DataFrame:
        """Rows at ``positions`` (in that order) as a DataFrame indexed by their file row ids."""
        import pyarrow as pa

        t = self.arrow()
        if columns is not None:
            t = t.select([c for c in columns if c in self.columns])
        pos = np.asarray(positions, dtype=np.int64)
        df = t.take(pa.array(pos)).to_pandas()
        df.index = pd.Index(self.row_ids(pos))
        return df

    def chunks(self, positions=None, columns=None, size: int = 8192):
        """DataFrames of at most ``size`` rows over ``positions`` (default: every row), in order."""
        pos = np.arange(self.num_rows, dtype=np.int64) if positions is None else np.asarray(positions, np.int64)
        for start in range(0, len(pos), size):
            yield self.take(pos[start:start + size], columns)

    def head(self, n: int, columns=None) -> pd.DataFrame:
        return self.take(np.arange(min(n, self.num_rows)), columns)


def open_table(path) -> Table:
    """Open a data file for lazy reading, converting it into the cache on first use.

    Args:
        path: a ``.csv``/``.tsv``/``.parquet``/``.jsonl``/``.ndjson`` file (compressed CSV and JSON
            Lines too).

    Returns:
        a :class:`Table`.

    Raises:
        DataError: the file is missing, of an unknown format, unreadable, or has no rows.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp(); p = os.path.join(d, "t.csv")
        >>> _ = open(p, "w").write("a,b\\n1,x\\n2,y\\n")
        >>> os.environ.setdefault("ARCHSPEC_CACHE_DIR", d) and None
        >>> t = open_table(p); t.num_rows, t.columns, t.take([1])["b"].tolist()
        (2, ['a', 'b'], ['y'])
    """
    path = Path(path)
    fmt = source_format(path)
    digest = file_hash(path)
    folder = cache_dir() / "tables"
    arrow_path = folder / f"{digest}-{fmt}-v{CACHE_VERSION}.arrow"
    meta_path = arrow_path.with_suffix(".json")
    meta = _read_meta(meta_path) if arrow_path.is_file() else None
    if meta is None:
        folder.mkdir(parents=True, exist_ok=True)
        meta = _convert(path, fmt, arrow_path)
        tmp = meta_path.with_name(f".{meta_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, meta_path)
    if meta["rows"] == 0:
        raise DataError(f"{path}: the file has no data rows — add rows below the header")
    skipped = np.asarray([b[0] for b in meta["bad_rows"]], dtype=np.int64)
    bad = [Problem("bad-line", msg, "fix the line (in CSV, quote values that hold the separator) or delete it",
                   row, None) for row, msg in meta["bad_rows"]]
    return Table(path, arrow_path, int(meta["rows"]), list(meta["columns"]), bad, skipped)


def _read_meta(path: Path):
    try:
        meta = json.loads(path.read_text())
        return meta if isinstance(meta, dict) and {"rows", "columns", "bad_rows"} <= meta.keys() else None
    except (OSError, ValueError):
        return None


def _convert(path: Path, fmt: str, out: Path) -> dict:
    """Stream ``path`` into an Arrow IPC file at ``out`` (atomically); returns the sidecar metadata."""
    import pyarrow as pa

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    writer, schema, rows, bad = None, None, 0, []
    what = {"csv": "CSV", "tsv": "TSV", "parquet": "Parquet", "jsonl": "JSON Lines"}[fmt]
    try:
        for batch, skipped in _read_chunks(path, fmt):
            bad += skipped
            if schema is None:
                schema = batch.schema
                writer = pa.ipc.new_file(str(tmp), schema)
            elif batch.schema != schema:
                batch = _conform(batch, schema, path, rows)
            writer.write_table(batch)
            rows += batch.num_rows
        if writer is None:
            raise DataError(f"{path}: the file has no data rows — add rows below the header")
        writer.close()
        os.replace(tmp, out)
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty — it needs a header line and at least one row") from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError, ImportError, pa.ArrowException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot be read as {what}: {first} — check that the file is complete "
                        "and in the format its extension says") from None
    finally:
        if writer is not None and tmp.exists():
            with contextlib.suppress(pa.ArrowException, OSError):  # already closed, or the disk failed
                writer.close()
            tmp.unlink(missing_ok=True)
    return {"source": str(path), "rows": rows, "columns": list(schema.names), "bad_rows": bad}


def _conform(batch, schema, path, offset):
    """A later Parquet row group whose types differ from the first (e.g. int vs float): cast it."""
    import pyarrow as pa

    try:
        return batch.cast(schema)
    except (pa.ArrowException, ValueError, TypeError) as exc:  # ArrowInvalid, ArrowNotImplementedError, ...
        raise DataError(f"{path}: the column types change after row {offset + 1} ({exc}) — write the file "
                        "with one type per column") from None


def _read_chunks(path: Path, fmt: str):
    """``(pyarrow.Table, skipped)`` pieces of the file; ``skipped`` = ``[(row, message)]``."""
    import pyarrow as pa

    if fmt == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(str(path))
        for rb in pf.iter_batches(batch_size=CHUNK_ROWS):
            t = pa.Table.from_batches([rb])
            yield t.rename_columns([str(c) for c in t.column_names]), []
        return
    if fmt in ("csv", "tsv"):
        sep = "," if fmt == "csv" else "\t"
        _reject_duplicate_header(path, sep)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # pandas' C reader: the same NA rules and quoting as `read_table`; everything as text.
            reader = pd.read_csv(path, sep=sep, dtype=str, chunksize=CHUNK_ROWS, on_bad_lines="warn")
            with reader:
                for chunk in reader:
                    skipped = []
                    for w in caught:
                        for line, why in _SKIPPED_LINE.findall(str(w.message)):
                            skipped.append((int(line) - 2, f"line {line} could not be read: {why.strip()}"))
                    caught.clear()
                    chunk.columns = [str(c) for c in chunk.columns]
                    yield _text_table(chunk), skipped
        return
    yield from _jsonl_chunks(path)


def _text_table(df: pd.DataFrame):
    import pyarrow as pa

    arrays = [pa.array(df[c].astype(object).where(df[c].notna(), None).tolist(), type=pa.string())
              for c in df.columns]
    return pa.table(arrays, names=list(df.columns))


def _cell(value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)


def _jsonl_chunks(path: Path):
    """JSON Lines read line by line: a line that is not a JSON object is a located problem, not a crash.

    Two passes: the first collects every key (a key may first appear on any line), the second
    writes the rows.
    """
    columns: dict[str, None] = {}
    for _, obj, _why in _json_objects(path):
        if obj is not None:
            columns.update((str(k), None) for k in obj)
    names = list(columns)
    rows: list[dict] = []
    skipped: list = []
    for row, (line_no, obj, why) in enumerate(_json_objects(path)):
        if obj is None:
            skipped.append((row, f"line {line_no} is not a JSON object ({why})"))
            continue
        rows.append({str(k): _cell(v) for k, v in obj.items()})
        if len(rows) >= CHUNK_ROWS:
            yield _dict_table(rows, names), skipped
            rows, skipped = [], []
    if not names:
        raise DataError(f"{path}: no line is a JSON object — write one object per line")
    if rows or skipped:
        yield _dict_table(rows, names), skipped


def _json_objects(path: Path):
    """``(line number, object or None, why not)`` per non-empty line."""
    import io

    with _opener(path)(path) as raw:
        for line_no, line in enumerate(io.TextIOWrapper(raw, encoding="utf-8"), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                yield line_no, None, str(exc).splitlines()[0][:120]
                continue
            if isinstance(obj, dict):
                yield line_no, obj, ""
            else:
                yield line_no, None, f"a JSON {type(obj).__name__}"


def _dict_table(rows: list[dict], columns: list[str]):
    import pyarrow as pa

    return pa.table({c: pa.array([r.get(c) for r in rows], type=pa.string()) for c in columns})


def _opener(path: Path):
    suffix = path.suffix.lower()
    if suffix == ".gz":
        import gzip
        return lambda p: gzip.open(p, "rb")
    if suffix == ".bz2":
        import bz2
        return lambda p: bz2.open(p, "rb")
    if suffix == ".xz":
        import lzma
        return lambda p: lzma.open(p, "rb")
    return lambda p: open(p, "rb")
