"""Prediction files written batch by batch: CSV, JSON Lines or Parquet, chosen by the extension.

Nothing is held back: each batch is appended as it comes (a Parquet row group per batch, through
``pyarrow.parquet.ParquetWriter``), so scoring a file larger than memory needs constant memory. The
file appears under its name only when complete (written to a temporary name, then renamed).
Torch-free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

#: rows kept for :attr:`Written.head` (``predict --show``)
HEAD_ROWS = 100


@dataclass
class Written:
    """What :class:`PredictionWriter` wrote.

    Attributes:
        path: the output file.
        rows: rows written.
        columns: column names, in order.
        head: the first rows (at most :data:`HEAD_ROWS`), as a DataFrame.
        skipped: input rows left out (``training.on_bad_row: skip``).
    """

    path: Path
    rows: int
    columns: list
    head: pd.DataFrame
    skipped: int = 0

    def __len__(self) -> int:
        return self.rows

    @property
    def iloc(self):
        return self.head.iloc


class PredictionWriter:
    """Appends batches of prediction columns to a ``.csv``, ``.jsonl``/``.ndjson`` or ``.parquet`` file.

    Args:
        path: the output file (its folder is created).
        rows: start every row with a ``row`` column (the input file's 0-based data row).

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "out.jsonl")
        >>> with PredictionWriter(p) as w:
        ...     w.write({"y": [1, 2]}, [0, 1]); w.write({"y": [3]}, [2])
        >>> open(p).read().split()
        ['{"y":1}', '{"y":2}', '{"y":3}']
    """

    def __init__(self, path, *, rows: bool = False):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        self.format = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(suffix, "csv")
        self.with_rows = rows
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.rows, self.columns, self._head, self._fh, self._pq = 0, None, [], None, None

    def __enter__(self) -> "PredictionWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.format != "parquet":
            self._fh = open(self.tmp, "w", encoding="utf-8", newline="")
        return self

    def write(self, columns: dict, rows) -> None:
        """Append one batch: ``columns`` maps names to equal-length sequences; ``rows`` the file rows."""
        df = pd.DataFrame(columns)
        if self.with_rows:
            df.insert(0, "row", np.asarray(rows, dtype=np.int64))
        if self.columns is None:
            self.columns = list(df.columns)
        if self.format == "csv":
            df.to_csv(self._fh, index=False, header=self.rows == 0)
        elif self.format == "jsonl":
            text = df.to_json(orient="records", lines=True)
            self._fh.write(text if text.endswith("\n") else text + "\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            if self._pq is None:
                self._pq = pq.ParquetWriter(str(self.tmp), table.schema)
            self._pq.write_table(table)
        if self.rows < HEAD_ROWS:
            self._head.append(df.head(HEAD_ROWS - self.rows))
        self.rows += len(df)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._fh is not None:
            self._fh.close()
        if self._pq is not None:
            self._pq.close()
        if exc_type is None:
            if self.tmp.exists():
                os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)

    def summary(self, skipped: int = 0) -> Written:
        """What was written."""
        head = pd.concat(self._head, ignore_index=True) if self._head else pd.DataFrame(columns=self.columns or [])
        return Written(self.path, self.rows, list(self.columns or []), head, skipped)
