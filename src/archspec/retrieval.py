"""Two-tower retrieval with a trained run: embed rows, index a catalogue, retrieve top-k, and
evaluate against the whole catalogue.

- :func:`embed`: one tower (``query`` or ``candidate``) of a similarity head over a data file, in
  batches, written as Parquet (``id``, ``embedding``) or NPY (plus ``<out>.ids.jsonl``).
- :func:`build_index`: the candidate tower over a catalogue (deduplicated by an id column), in a
  faiss index (``exact``, ``hnsw`` or ``ivf``) that uses the metric the model was trained with:
  cosine → L2-normalise, then inner product; dot → inner product; euclidean → L2. Without faiss
  (the optional extra ``retrieval``) the index is an exact numpy search, said in one line.
- :func:`retrieve`: the query tower over query rows and the ``k`` best catalogue ids per row,
  optionally excluding items a row has already seen.
- :func:`catalogue_metrics`: recall@k, NDCG@k and MRR of each test pair's candidate among *all*
  catalogue candidates (exact search), with the popularity baseline on the same protocol.

Data is read in chunks (:func:`tower_batches`), so memory does not grow with the file; faiss is
imported only here, and only when an index is built or searched (faiss and torch each bring an
OpenMP runtime: its threads are pinned, see :func:`_faiss`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from . import __version__
from .errors import EXIT_CHECKPOINT, ArchspecError, CheckpointError, DataError

KINDS = ("exact", "hnsw", "ivf")
SIDES = ("query", "candidate")
INDEX_FORMAT = "archspec-index"
INDEX_VERSION = 1
MANIFEST = "index.json"
CHUNK_ROWS = 4096
# How a metric is searched: normalise first?, faiss metric, and how a raw faiss value becomes the
# model's similarity (faiss L2 indexes return squared distances; the model scores -‖q - c‖).
METRICS = {"cosine": (True, "ip"), "dot": (False, "ip"), "euclidean": (False, "l2")}


class RetrievalError(ArchspecError):
    """A retrieval command cannot run: no similarity head, a bad index directory, a bad option."""

    exit_code = EXIT_CHECKPOINT


# ------------------------------------------------------------------------------------------ reading


def _read_chunks(path: Path, rows: int) -> Iterator["object"]:
    """DataFrames of at most ``rows`` rows, in file order, indexed by 0-based row position."""
    import pandas as pd

    from .data.tables import _reject_duplicate_header, table_format

    fmt = table_format(path)
    if fmt is None:
        raise DataError(f"{path}: unknown data format '{''.join(path.suffixes) or '(no extension)'}' — "
                        "use .csv, .tsv, .parquet or .jsonl/.ndjson")
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    start = 0
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            parts = (b.to_pandas() for b in pq.ParquetFile(path).iter_batches(batch_size=rows))
        elif fmt in ("csv", "tsv"):
            sep = "," if fmt == "csv" else "\t"
            _reject_duplicate_header(path, sep)
            parts = pd.read_csv(path, sep=sep, chunksize=rows)
        else:
            parts = pd.read_json(path, lines=True, dtype=False, chunksize=rows)
        for df in parts:
            df.columns = [str(c) for c in df.columns]
            df.index = pd.RangeIndex(start, start + len(df))
            start += len(df)
            yield df
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot be read ({first}) — check that the file is complete and in the "
                        "format its extension says") from None
    if start == 0:
        raise DataError(f"{path}: the file has no data rows")


def _restricted(checked, names):
    """The checked spec with only some inputs and no heads: what the data transform and its
    pre-flight read, so a catalogue file needs only the candidate tower's columns."""
    import dataclasses

    spec = checked.spec.model_copy(update={"inputs": {n: c for n, c in checked.spec.inputs.items() if n in names},
                                           "heads": {}})
    return dataclasses.replace(checked, spec=spec)


def tower_batches(pre, checked, data_file, inputs: list[str], *, batch_size: int = CHUNK_ROWS,
                  id_column: str | None = None, extra_columns=()) -> Iterator[tuple[list, dict, "object"]]:
    """``(ids, tensors, frame)`` per chunk of a data file, transformed for the given input nodes only.

    This is the one place the retrieval commands read data (through the run's fitted
    preprocessing), so it can move onto a streaming loader without touching anything else.

    Args:
        pre: the run's :class:`~archspec.data.Preprocessor`.
        checked: the run's checked spec.
        data_file: CSV/TSV/Parquet/JSON Lines file.
        inputs: input node names to transform (e.g. one tower's inputs).
        batch_size: rows per chunk.
        id_column: the column whose values are the ids; ``None`` numbers rows from 0.
        extra_columns: further columns that must exist (returned in ``frame``).

    Raises:
        DataError: a column is missing or a value cannot be transformed (file, row and column named).
    """
    import copy

    from .data import Loader, default_workers, open_table, preflight_table
    from .data.problems import Problem, raise_if

    path = Path(data_file)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    view = copy.copy(pre)
    view.checked = _restricted(checked, set(inputs))
    table = open_table(path)
    problems = []
    for col in ([id_column] if id_column else []) + list(extra_columns):
        if col not in table.columns:
            problems.append(Problem("missing-column", f"missing column '{col}'",
                                    f"the file has: {', '.join(map(str, table.columns[:15]))}", None, col))
    raise_if(problems, str(path))
    on_bad_row = checked.spec.training.on_bad_row
    preflight_table(view.checked, table, None, "predict", targets=False, on_bad_row=on_bad_row)
    # the one data path: the tower's inputs only, built in worker processes, in file order
    loader = Loader(table, view, batch_size=batch_size, targets=False, inputs=list(inputs), rank=0, world_size=1,
                    num_workers=default_workers(checked), on_bad_row=on_bad_row, name="embed")
    keep = [c for c in dict.fromkeys([id_column, *extra_columns]) if c] or list(table.columns[:1])
    try:
        # batches come in file order, so the id/extra columns are read alongside, chunk by chunk
        for (x, _, rows), df in zip(loader, table.chunks(columns=keep, size=batch_size)):
            df = _typed(df.loc[rows.numpy()])  # rows a skipped bad row left out
            ids = df[id_column].tolist() if id_column else df.index.tolist()
            yield [_plain(i) for i in ids], x, df
    finally:
        loader.close()


def _first_seen(ids: list, seen: set) -> list[int]:
    """Positions of the ids not seen before (first occurrence wins); adds them to ``seen``."""
    keep = []
    for i, v in enumerate(ids):
        key = json.dumps(v)
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return keep


def _typed(df):
    """Text cells as numbers where a whole column of the chunk parses (what reading the CSV with
    pandas gives): the cache keeps CSV cells as text, but ids like ``42`` should stay numbers."""
    import pandas as pd

    for col in df.columns:
        if df[col].dtype == object or pd.api.types.is_string_dtype(df[col]):
            try:
                df[col] = pd.to_numeric(df[col])
            except (ValueError, TypeError):
                pass  # a text column stays text
    return df


def _plain(v):
    """An id as a JSON value (numpy scalars become Python ones)."""
    return v.item() if hasattr(v, "item") else v


# ------------------------------------------------------------------------------------------ towers


@dataclass
class Tower:
    """One side of a similarity head of a trained run."""

    model: object
    pre: object
    checked: object
    head: str
    side: str
    node: str
    inputs: list[str]  # input node names the tower reads
    metric: str

    @property
    def keys(self) -> list[str]:
        return self.model.input_keys([self.node])


def load_tower(run_dir, side: str, head: str | None = None) -> Tower:
    """A tower of a run's similarity head (the only one, or ``head``).

    Raises:
        RetrievalError: the run has no similarity head, several and none chosen, or a bad side.
    """
    from .inference import load_run

    if side not in SIDES:
        raise RetrievalError(f"unknown tower '{side}' — use query or candidate")
    return tower_of(load_run(run_dir), side, head, str(run_dir))


def tower_of(loaded, side: str, head: str | None = None, where: str = "the run") -> Tower:
    """:func:`load_tower` for an already loaded run ``(model, preprocessor, checked)``."""
    model, pre, checked = loaded
    heads = list(model.similarity)
    if not heads:
        raise RetrievalError(f"{where}: the spec has no similarity head, so there are no towers to embed "
                             "with — retrieval needs a two-tower model (`type: similarity`)")
    if head is None:
        if len(heads) > 1:
            raise RetrievalError(f"{where}: several similarity heads ({', '.join(heads)}) — choose one with --head")
        head = heads[0]
    elif head not in model.similarity:
        raise RetrievalError(f"no similarity head '{head}' — known: {', '.join(heads)}")
    node = model.similarity[head][0 if side == "query" else 1]
    keys = model.input_keys([node])
    inputs = [k for k in checked.spec.inputs if k in keys]
    return Tower(model, pre, checked, head, side, node, inputs, model.node_module(head).metric)


def default_id_column(tower: Tower) -> str | None:
    """The column of the candidate tower's only categorical input (e.g. ``movie_id``), else ``None``."""
    cats = [tower.checked.spec.inputs[n].column for n in tower.inputs
            if tower.checked.spec.inputs[n].type == "categorical"]
    return cats[0] if len(cats) == 1 else None


def _candidate_id_column(run_dir_or_tower, id_column):
    col = id_column or default_id_column(run_dir_or_tower)
    if col is None:
        raise RetrievalError("the candidate tower has no single categorical input to take ids from — give "
                             "--id-column COLUMN (the column that identifies a catalogue item)")
    return col


def embed_batches(tower: Tower, data_file, *, batch_size: int = 1024, id_column: str | None = None,
                  extra_columns=(), dedup: bool = False) -> Iterator[tuple[list, np.ndarray, object]]:
    """``(ids, embeddings (n, D) float32, frame)`` per chunk; ``dedup`` keeps the first row of each id."""
    import torch

    seen: set = set()
    for ids, x, df in tower_batches(tower.pre, tower.checked, data_file, tower.inputs, batch_size=batch_size,
                                    id_column=id_column, extra_columns=extra_columns):
        if dedup:
            keep = _first_seen(ids, seen)
            if not keep:
                continue
            if len(keep) < len(ids):
                idx = torch.tensor(keep)
                x = {k: v[idx] for k, v in x.items()}
                ids = [ids[i] for i in keep]
                df = df.iloc[keep]
        with torch.no_grad():
            emb = tower.model.encode({k: x[k] for k in tower.keys}, tower.node)
        yield ids, emb.float().numpy(), df


def embed_frame(tower: Tower, df, data_dir, file: str = "<rows>") -> np.ndarray:
    """``(n, D)`` float32 embeddings of a tower for the rows of a DataFrame (e.g. an HTTP request).

    Only the tower's input columns are needed and checked; a bad value raises the same located
    :class:`~archspec.errors.DataError` as in a file (``file`` names the source).
    """
    import copy

    import torch

    from .data import preflight

    view = copy.copy(tower.pre)
    view.checked = _restricted(tower.checked, set(tower.inputs))
    preflight(view.checked, df, file, "predict", data_dir=Path(data_dir), targets=False)
    x, _ = view.transform(df, Path(data_dir), targets=False)
    with torch.no_grad():
        emb = tower.model.encode({k: x[k] for k in tower.keys}, tower.node)
    return emb.float().numpy()


# ------------------------------------------------------------------------------------------- files


class _NpyWriter:
    """Append float32 rows; the ``.npy`` header (which holds the row count) is written on close."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(path.name + ".rows.tmp")
        self.fh = open(self.tmp, "wb")
        self.n, self.dim = 0, None

    def write(self, rows: np.ndarray) -> None:
        self.dim = rows.shape[1]
        self.fh.write(np.ascontiguousarray(rows, dtype="<f4").tobytes())
        self.n += len(rows)

    def close(self) -> None:
        self.fh.close()
        out = self.path.with_name(self.path.name + ".tmp")
        with open(out, "wb") as fh, open(self.tmp, "rb") as src:
            np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False,
                                                      "shape": (self.n, self.dim or 0)})
            while chunk := src.read(1 << 22):
                fh.write(chunk)
        self.tmp.unlink()
        os.replace(out, self.path)


def _ids_path(path: Path) -> Path:
    return path.with_name(path.stem + ".ids.jsonl")


class EmbeddingWriter:
    """Writes ``(ids, embeddings)`` chunks to Parquet (columns ``id``, ``embedding``) or to NPY
    (float32 ``(N, D)``) with the ids in ``<stem>.ids.jsonl`` (one JSON value per line)."""

    def __init__(self, out):
        self.path = Path(out)
        suffix = self.path.suffix.lower()
        if suffix not in (".parquet", ".npy"):
            raise RetrievalError(f"{out}: write embeddings to a .parquet or .npy file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.kind = suffix[1:]
        self.n = 0
        self._pq = None
        if self.kind == "npy":
            self._npy = _NpyWriter(self.path)
            self._ids = open(_ids_path(self.path), "w", encoding="utf-8")

    def write(self, ids: list, emb: np.ndarray) -> None:
        self.n += len(ids)
        if self.kind == "npy":
            self._npy.write(emb)
            self._ids.writelines(json.dumps(i) + "\n" for i in ids)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        values = pa.array(np.ascontiguousarray(emb, dtype=np.float32).reshape(-1))
        table = pa.table({"id": pa.array(ids), "embedding": pa.FixedSizeListArray.from_arrays(values, emb.shape[1])})
        if self._pq is None:
            self._pq = pq.ParquetWriter(str(self.path) + ".tmp", table.schema)
        self._pq.write_table(table)

    def close(self) -> None:
        if self.kind == "npy":
            self._npy.close()
            self._ids.close()
        elif self._pq is not None:
            self._pq.close()
            os.replace(str(self.path) + ".tmp", self.path)


def read_embeddings(path) -> tuple[list, np.ndarray]:
    """``(ids, embeddings)`` written by :func:`embed`."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        emb = np.load(path)
        with open(_ids_path(path), encoding="utf-8") as fh:
            return [json.loads(line) for line in fh], emb
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    return t.column("id").to_pylist(), np.asarray(t.column("embedding").combine_chunks().flatten()).reshape(
        t.num_rows, -1).astype(np.float32)


def embed(run_dir, data_file, out, *, side: str = "candidate", head: str | None = None,
          id_column: str | None = None, batch_size: int = 1024) -> tuple[int, int]:
    """Embed every row of ``data_file`` with one tower; returns ``(rows, dim)``.

    Raises:
        RetrievalError, DataError, CheckpointError.
    """
    tower = load_tower(run_dir, side, head)
    writer = EmbeddingWriter(out)
    dim = 0
    try:
        for ids, emb, _ in embed_batches(tower, data_file, batch_size=batch_size, id_column=id_column):
            writer.write(ids, emb)
            dim = emb.shape[1]
    finally:
        writer.close()
    return writer.n, dim


# ------------------------------------------------------------------------------------------- index


def _faiss(threads: int | None = None):
    """faiss, imported here only (never at module import: its OpenMP runtime and torch's can clash),
    with its thread count pinned; ``None`` when it is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    faiss.omp_set_num_threads(max(1, int(threads or _threads())))
    return faiss


def _threads() -> int:
    if "torch" in sys.modules:  # share the cores torch was given rather than oversubscribe them
        return sys.modules["torch"].get_num_threads()
    return os.cpu_count() or 1


def run_fingerprint(run_dir) -> dict:
    """What an index was built from: the run's spec hash and the weights it used."""
    from . import checkpoint as ckpt

    run = Path(run_dir)
    spec = run / "spec.yaml"
    if not spec.is_file():
        raise CheckpointError(f"{run_dir} is not a trained run directory (no spec.yaml)")
    pointer = ckpt.read_pointer(run / "checkpoints", "best", missing_ok=True) or \
        ckpt.read_pointer(run / "checkpoints", "last", missing_ok=True) or {}
    return {"spec_sha256": hashlib.sha256(spec.read_bytes()).hexdigest(), "weights": pointer.get("weights")}


def _prepare(x: np.ndarray, normalize: bool) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if normalize:
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.maximum(norm, 1e-12)  # what F.normalize does
    return x


class ExactIndex:
    """Brute-force search in numpy (the fallback without faiss), chunked over the queries."""

    def __init__(self, vectors: np.ndarray, metric: str):
        self.x = vectors
        self.metric = metric
        self.sq = (vectors.astype(np.float64) ** 2).sum(1) if metric == "l2" else None

    @property
    def ntotal(self) -> int:
        return len(self.x)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self.x))
        out_d = np.empty((len(q), k), np.float32)
        out_i = np.empty((len(q), k), np.int64)
        for s in range(0, len(q), 256):
            qq = q[s:s + 256]
            if self.metric == "ip":
                sims = qq @ self.x.T
            else:
                sims = -((qq.astype(np.float64) ** 2).sum(1)[:, None] - 2 * qq @ self.x.T + self.sq[None, :])
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else \
                np.tile(np.arange(sims.shape[1]), (len(qq), 1))
            top = np.take_along_axis(sims, part, 1)
            order = np.argsort(-top, axis=1, kind="stable")
            out_i[s:s + 256] = np.take_along_axis(part, order, 1)
            best = np.take_along_axis(top, order, 1)
            out_d[s:s + 256] = best if self.metric == "ip" else -best  # faiss L2: squared distance
        return out_d, out_i


def make_index(vectors: np.ndarray, metric: str, kind: str, params: dict, faiss=None):
    """A searchable index over ``vectors`` (already normalised for cosine).

    Args:
        metric: ``ip`` or ``l2``.
        kind: ``exact``, ``hnsw`` or ``ivf``; with ``faiss=None`` only an :class:`ExactIndex`.
        params: ``m``, ``ef_construction``, ``ef_search`` (hnsw); ``nlist``, ``nprobe`` (ivf).
    """
    if faiss is None:
        return ExactIndex(vectors, metric)
    d = vectors.shape[1]
    fm = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    if kind == "exact":
        index = faiss.IndexFlatIP(d) if metric == "ip" else faiss.IndexFlatL2(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, int(params["m"]), fm)
        index.hnsw.efConstruction = int(params["ef_construction"])
        index.hnsw.efSearch = int(params["ef_search"])
    else:
        quantizer = faiss.IndexFlatIP(d) if metric == "ip" else faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quantizer, d, int(params["nlist"]), fm)
        index.train(vectors)
        index.nprobe = int(params["nprobe"])
    index.add(vectors)
    return index


def default_params(kind: str, n: int, given: dict | None = None) -> dict:
    """Build and search parameters of an index kind, with defaults that reach high recall."""
    given = {k: v for k, v in (given or {}).items() if v is not None}
    if kind == "hnsw":
        return {"m": 32, "ef_construction": 200, "ef_search": 128, **given}
    if kind == "ivf":
        nlist = given.get("nlist") or max(1, min(int(4 * math.sqrt(max(n, 1))), max(1, n // 39)))
        return {"nlist": int(nlist), "nprobe": int(given.get("nprobe") or min(nlist, max(1, nlist // 8))),
                **{k: v for k, v in given.items() if k not in ("nlist", "nprobe")}}
    return {}


@dataclass
class IndexInfo:
    """What :func:`build_index` did."""

    directory: Path
    count: int
    duplicates: int
    dim: int
    kind: str
    backend: str
    note: str | None


def build_index(run_dir, catalogue, out_dir, *, kind: str = "exact", head: str | None = None,
                id_column: str | None = None, batch_size: int = 1024, params: dict | None = None,
                threads: int | None = None, faiss_module=...) -> IndexInfo:
    """Embed a catalogue with the candidate tower and write an index directory.

    The directory holds ``index.faiss`` (or nothing more than the vectors, for the numpy
    fallback), ``vectors.npy`` (the indexed, normalised vectors), ``ids.jsonl`` (row ``i`` of the
    index is the id on line ``i``) and ``index.json`` (spec hash, head, tower, metric, build
    parameters, counts).

    Raises:
        RetrievalError: an unknown kind, or no id column.
        DataError: the catalogue does not fit the candidate tower.
    """
    if kind not in KINDS:
        raise RetrievalError(f"unknown index kind '{kind}' — known: {', '.join(KINDS)}")
    tower = load_tower(run_dir, "candidate", head)
    id_column = _candidate_id_column(tower, id_column)
    normalize, metric = METRICS[tower.metric]
    ids, parts, rows = [], [], 0
    for chunk_ids, emb, df in embed_batches(tower, catalogue, batch_size=batch_size, id_column=id_column,
                                            dedup=True):
        ids += chunk_ids
        parts.append(_prepare(emb, normalize))
    rows = _count_rows(catalogue)
    vectors = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    faiss = _faiss(threads) if faiss_module is ... else faiss_module
    note = None
    backend = "faiss" if faiss is not None else "numpy"
    if faiss is None:
        note = ("faiss is not installed: exact numpy search instead of "
                f"'{kind}' (install archspec[retrieval] for faiss)" if kind != "exact" else
                "faiss is not installed: exact numpy search (install archspec[retrieval] for faiss)")
    used_kind = kind if faiss is not None else "exact"
    p = default_params(used_kind, len(ids), params)
    import time

    t0 = time.perf_counter()
    index = make_index(vectors, metric, used_kind, p, faiss)
    build_s = time.perf_counter() - t0
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if faiss is not None:
        faiss.write_index(index, str(out / "index.faiss.tmp"))
        os.replace(out / "index.faiss.tmp", out / "index.faiss")
    else:
        (out / "index.faiss").unlink(missing_ok=True)
    np.save(out / "vectors.tmp.npy", vectors)
    os.replace(out / "vectors.tmp.npy", out / "vectors.npy")
    with open(out / "ids.jsonl.tmp", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(i) + "\n" for i in ids)
    os.replace(out / "ids.jsonl.tmp", out / "ids.jsonl")
    sim = tower.model.node_module(tower.head)
    manifest = {
        "format": INDEX_FORMAT, "version": INDEX_VERSION, "archspec": __version__,
        "run": str(Path(run_dir).resolve()), **run_fingerprint(run_dir),
        "head": tower.head, "tower": "candidate", "node": tower.node,
        "similarity": tower.metric, "normalize": "l2" if normalize else None,
        "metric": "inner_product" if metric == "ip" else "l2",
        "kind": used_kind, "requested_kind": kind, "backend": backend,
        "faiss": getattr(faiss, "__version__", None) if faiss is not None else None,
        "params": p, "build_seconds": round(build_s, 3),
        "catalogue": str(Path(catalogue).resolve()), "id_column": id_column,
        "count": len(ids), "dim": int(vectors.shape[1]) if len(ids) else 0,
        "catalogue_rows": rows, "duplicates_dropped": rows - len(ids),
        "temperature": sim.temperature,
        **({"scale": float(sim.scale.detach()), "bias": float(sim.bias.detach())} if sim.scale is not None else {}),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return IndexInfo(out, len(ids), rows - len(ids), manifest["dim"], used_kind, backend, note)


def _count_rows(path) -> int:
    from .data.tables import table_format

    path = Path(path)
    if table_format(path) == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return sum(len(df) for df in _read_chunks(path, 65536))


@dataclass
class LoadedIndex:
    manifest: dict
    ids: list
    index: object


def load_index(index_dir, run_dir=None, *, threads: int | None = None, params: dict | None = None) -> LoadedIndex:
    """Read an index directory (checking that it was built from ``run_dir``'s spec and weights).

    Raises:
        RetrievalError: the directory is missing files, or belongs to another run.
    """
    d = Path(index_dir)
    path = d / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise RetrievalError(f"{d} is not an index directory (no {MANIFEST}) — build one with "
                             "`archspec index RUN --data CATALOGUE --out DIR`") from None
    except ValueError as exc:
        raise RetrievalError(f"{path} is corrupt ({exc}) — build the index again") from None
    if manifest.get("format") != INDEX_FORMAT or manifest.get("version") != INDEX_VERSION:
        raise RetrievalError(f"{path}: not an archspec index of version {INDEX_VERSION} — build the index again")
    if run_dir is not None:
        fp = run_fingerprint(run_dir)
        if fp["spec_sha256"] != manifest.get("spec_sha256") or fp["weights"] != manifest.get("weights"):
            raise RetrievalError(f"{d} was built from another model (spec or weights differ from {run_dir}) — "
                                 "its vectors would not match the query tower; build the index again with this run")
    with open(d / "ids.jsonl", encoding="utf-8") as fh:
        ids = [json.loads(line) for line in fh]
    metric = "ip" if manifest["metric"] == "inner_product" else "l2"
    faiss = _faiss(threads) if manifest["backend"] == "faiss" else None
    if manifest["backend"] == "faiss" and faiss is None:
        print("archspec: faiss is not installed: searching the index's vectors exactly with numpy", file=sys.stderr)
    if faiss is not None and (d / "index.faiss").is_file():
        index = faiss.read_index(str(d / "index.faiss"))
        p = {**manifest.get("params", {}), **{k: v for k, v in (params or {}).items() if v is not None}}
        if manifest["kind"] == "hnsw" and "ef_search" in p:
            faiss.downcast_index(index).hnsw.efSearch = int(p["ef_search"])
        if manifest["kind"] == "ivf" and "nprobe" in p:
            faiss.extract_index_ivf(index).nprobe = int(p["nprobe"])
    else:
        index = ExactIndex(np.load(d / "vectors.npy"), metric)
    if index.ntotal != len(ids):
        raise RetrievalError(f"{d}: the index holds {index.ntotal} vectors but ids.jsonl {len(ids)} — build it again")
    return LoadedIndex(manifest, ids, index)


def to_similarity(raw: np.ndarray, manifest: dict) -> np.ndarray:
    """faiss values → the model's raw similarity (cosine, dot, or -euclidean distance)."""
    if manifest["metric"] == "l2":
        return -np.sqrt(np.maximum(raw, 0.0))
    return raw


def _seen(value) -> set:
    """Items a query row has already seen: a list, or a string of ids separated by ``|`` or ``,``
    (pandas-free: the torch-free serving runtime uses it too)."""
    from .serving import _missing

    if isinstance(value, (list, tuple, np.ndarray)):
        return {json.dumps(_plain(v)) for v in value}
    if _missing(value):
        return set()
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace(",", "|").split("|") if p.strip()]
        out = set()
        for p in parts:
            out.add(json.dumps(p))
            try:
                out.add(json.dumps(int(p)))
            except ValueError:
                pass
        return out
    return {json.dumps(_plain(value))}


def top_k(loaded: LoadedIndex, emb: np.ndarray, k: int, seen: list | None = None) -> list[list[tuple]]:
    """The ``k`` best ``(id, similarity)`` per query embedding, best first, leaving out each row's
    ``seen`` ids (sets from :func:`_seen`). The similarity is the model's raw score (cosine, dot
    product, or negative euclidean distance). Used by :func:`retrieve` and :mod:`archspec.serving`.
    """
    m = loaded.manifest
    seen = seen if seen is not None else [set()] * len(emb)
    if not len(emb):
        return []
    fetch = min(loaded.index.ntotal, k + max((len(s) for s in seen), default=0))
    dist, idx = loaded.index.search(_prepare(emb, m["normalize"] == "l2"), fetch)
    sims = to_similarity(dist, m)
    out = []
    for qi in range(len(emb)):
        hits = []
        for j, s in zip(idx[qi], sims[qi]):
            if j < 0:
                continue
            item = loaded.ids[j]
            if seen[qi] and json.dumps(item) in seen[qi]:
                continue
            hits.append((item, float(s)))
            if len(hits) == k:
                break
        out.append(hits)
    return out


def retrieve(run_dir, index_dir, data_file, out, *, k: int = 10, exclude: str | None = None,
             id_column: str | None = None, batch_size: int = 1024, threads: int | None = None,
             params: dict | None = None):
    """Top-``k`` catalogue ids and scores for every query row; written long (one row per hit).

    Output columns: ``query`` (the query row's id: ``id_column`` or its row number), ``rank``
    (1 = best), ``id`` (catalogue id), ``score`` (the raw similarity the model was trained with:
    cosine, dot product or negative euclidean distance). With ``exclude``, items listed in that
    column of the query row (a list, or ids separated by ``|``/``,``) are left out.

    Returns:
        the written ``pandas.DataFrame``.
    """
    import pandas as pd

    if k < 1:
        raise RetrievalError(f"-k must be at least 1, got {k}")
    loaded = load_index(index_dir, run_dir, threads=threads, params=params)
    m = loaded.manifest
    tower = load_tower(run_dir, "query", m["head"])
    rows = []
    extra = [exclude] if exclude else []
    for qids, emb, df in embed_batches(tower, data_file, batch_size=batch_size, id_column=id_column,
                                       extra_columns=extra):
        seen = [_seen(v) for v in df[exclude]] if exclude else None
        for qid, hits in zip(qids, top_k(loaded, emb, k, seen)):
            rows += [(qid, rank, item, score) for rank, (item, score) in enumerate(hits, 1)]
    result = pd.DataFrame(rows, columns=["query", "rank", "id", "score"])
    _write_table(result, out)
    return result


def _write_table(df, out) -> None:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        df.to_parquet(path, index=False)
    elif suffix in (".jsonl", ".ndjson"):
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_csv(path, index=False)


# ------------------------------------------------------------------------------ catalogue metrics


def rank_metrics(ranks: np.ndarray, ks: list[int]) -> dict:
    """recall@k, NDCG@k (one relevant item: ``1 / log2(rank + 2)`` inside the top k) and MRR from
    0-based ranks of each query's positive (``-1`` = not in the catalogue: a miss everywhere).

    Example:
        >>> m = rank_metrics(np.array([0, 1, 9, -1]), [1, 10])
        >>> m["recall@1"], m["recall@10"], round(m["mrr"], 4)
        (0.25, 0.75, 0.4)
    """
    ranks = np.asarray(ranks)
    hit = ranks >= 0
    r = np.where(hit, ranks, np.iinfo(np.int64).max // 2)
    out = {}
    for k in ks:
        inside = hit & (r < k)
        out[f"recall@{k}"] = float(inside.mean()) if len(r) else math.nan
        out[f"ndcg@{k}"] = float(np.where(inside, 1.0 / np.log2(np.minimum(r, k) + 2.0), 0.0).mean()) if len(r) \
            else math.nan
    out["mrr"] = float(np.where(hit, 1.0 / (r + 1.0), 0.0).mean()) if len(r) else math.nan
    return out


def positive_ranks(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """0-based rank of each row's positive column: how many catalogue items score strictly higher
    (ties count in the positive's favour, as in :func:`archspec.metrics.recall_at_k`); ``-1`` where
    the positive is ``-1``."""
    rows = np.arange(len(scores))
    pos = scores[rows, np.maximum(positives, 0)]
    rank = (scores > pos[:, None]).sum(1)
    return np.where(positives >= 0, rank, -1)


def _seen_in_training(run_dir, tower_q: Tower, query_column: str, id_column: str, batch_size: int) -> dict:
    """Query id → the candidate ids paired with it in the run's training file (both splits)."""
    from .train import RunPaths, _data_path, _source

    run = RunPaths(Path(run_dir))
    file = _source(run).get("data") or _data_path(tower_q.checked, tower_q.checked.spec.training.data.train, "train")
    seen: dict = {}
    for df in _read_chunks(Path(file), 65536):
        for col in (query_column, id_column):
            if col not in df.columns:
                raise DataError(f"{file}: no column '{col}' to find the items each query saw in training — "
                                "give --query-id-column / --id-column")
        for u, v in zip(df[query_column], df[id_column]):
            seen.setdefault(json.dumps(_plain(u)), set()).add(json.dumps(_plain(v)))
    return seen


def _mask_seen(scores: np.ndarray, seen_rows: list, positives: np.ndarray) -> np.ndarray:
    """Scores with each row's seen items (other than its positive) pushed below everything."""
    scores = np.array(scores, dtype=np.float64)
    for r, cols in enumerate(seen_rows):
        if len(cols):
            cols = cols[cols != positives[r]]
            scores[r, cols] = -np.inf
    return scores


def catalogue_metrics(run_dir, data_file, catalogue, *, ks: list[int] | None = None, baseline: bool = False,
                      id_column: str | None = None, batch_size: int = 1024, exclude_seen: bool = False,
                      query_id_column: str | None = None) -> tuple[dict, dict | None, dict]:
    """Full-catalogue retrieval metrics of a run's similarity head on a file of positive pairs.

    Protocol: the candidate tower embeds every catalogue item once (deduplicated by id); for each
    test row the query tower's embedding is scored against *all* catalogue items with the model's
    own similarity (exact search); the row's positive is the catalogue item whose id equals the
    row's id column. Its rank is the number of items scored strictly higher. recall@k = share of
    rows ranked < k; NDCG@k = mean ``1 / log2(rank + 2)`` inside the top k (one relevant item);
    MRR = mean ``1 / (rank + 1)``. A test row whose id is not in the catalogue counts as a miss.
    By default nothing is excluded (items the user saw in training stay in the candidate set); with
    ``exclude_seen`` the items paired with the row's query id in the run's training file (other
    than the row's own positive) are removed from its ranking, for model and baseline alike. The popularity
    baseline scores each catalogue item by how often it was a positive in the run's training split
    (ties broken at random, seeded) and is ranked the same way.

    Returns:
        ``(metrics, baseline_metrics or None, info)``, keyed ``HEAD/catalogue_recall@K`` etc.
        (``HEAD/catalogue_unseen_recall@K`` with ``exclude_seen``);
        ``info`` counts catalogue items, test rows and rows whose item is not in the catalogue.
    """
    from .graph import prediction_metrics
    from .metrics import recall_ks

    tower_c = load_tower(run_dir, "candidate")
    head = tower_c.head
    id_column = _candidate_id_column(tower_c, id_column)
    if ks is None:
        ks = recall_ks(prediction_metrics(tower_c.checked.graph, head)) or [10]
    normalize, metric = METRICS[tower_c.metric]
    cat_ids, parts, pop_keys = [], [], []
    from .baselines import _row_keys

    keys = tower_c.keys
    seen: set = set()
    for ids, x, _ in tower_batches(tower_c.pre, tower_c.checked, catalogue, tower_c.inputs, batch_size=batch_size,
                                   id_column=id_column):
        import torch

        keep = _first_seen(ids, seen)
        if not keep:
            continue
        idx = torch.tensor(keep)
        x = {kk: v[idx] for kk, v in x.items()}
        with torch.no_grad():
            parts.append(_prepare(tower_c.model.encode({kk: x[kk] for kk in keys}, tower_c.node).float().numpy(),
                                  normalize))
        cat_ids += [ids[i] for i in keep]
        if baseline:
            pop_keys += _row_keys(x, keys)
    cat = np.concatenate(parts)
    where = {json.dumps(v): i for i, v in enumerate(cat_ids)}
    sq = (cat.astype(np.float64) ** 2).sum(1) if metric == "l2" else None
    tower_q = load_tower(run_dir, "query", head)
    history: dict = {}
    extra = [id_column]
    if exclude_seen:
        query_id_column = query_id_column or default_id_column(tower_q)
        if query_id_column is None:
            raise RetrievalError("the query tower has no single categorical input to take query ids from — give "
                                 "--query-id-column COLUMN (the column that identifies a user)")
        history = _seen_in_training(run_dir, tower_q, query_id_column, id_column, batch_size)
        extra.append(query_id_column)
    ranks, positives, seen_rows = [], [], []
    for _, emb, df in embed_batches(tower_q, data_file, batch_size=batch_size, extra_columns=extra):
        q = _prepare(emb, normalize)
        scores = q @ cat.T if metric == "ip" else -np.sqrt(np.maximum(
            (q.astype(np.float64) ** 2).sum(1)[:, None] - 2 * q @ cat.T + sq[None, :], 0))
        pos = np.array([where.get(json.dumps(_plain(v)), -1) for v in df[id_column]], dtype=np.int64)
        if exclude_seen:
            rows = [np.array([where[i] for i in history.get(json.dumps(_plain(u)), ()) if i in where], dtype=np.int64)
                    for u in df[query_id_column]]
            rows = [r[r != p] for r, p in zip(rows, pos)]  # never the row's own positive
            scores = _mask_seen(scores, rows, pos)
            seen_rows += rows
        positives.append(pos)
        ranks.append(positive_ranks(scores, pos))
    ranks_a, pos_a = np.concatenate(ranks), np.concatenate(positives)
    prefix = f"{head}/catalogue_unseen_" if exclude_seen else f"{head}/catalogue_"
    metrics = {prefix + k: v for k, v in rank_metrics(ranks_a, ks).items()}
    info = {"catalogue_items": len(cat_ids), "test_rows": int(len(ranks_a)),
            "not_in_catalogue": int((pos_a < 0).sum()), "exclude_seen": exclude_seen,
            "seen_excluded": int(sum(len(r) for r in seen_rows))}
    base = None
    if baseline:
        path = Path(run_dir) / "baseline.json"
        if not path.is_file():
            raise CheckpointError(f"{run_dir} has no baseline.json (trained by an older archspec)")
        stats = json.loads(path.read_text()).get(head, {})
        counts = stats.get("popularity", {})
        pop = np.array([float(counts.get(kk, 0)) for kk in pop_keys])
        noise = np.random.default_rng(0).random(len(pop)) * 1e-3  # seeded tie-breaking
        score = pop + noise
        rank_b = []
        for start in range(0, len(pos_a), 1024):
            p = pos_a[start:start + 1024]
            s_b = np.broadcast_to(score, (len(p), len(score)))
            if exclude_seen:
                s_b = _mask_seen(s_b, seen_rows[start:start + 1024], p)
            rank_b.append(positive_ranks(s_b, p))
        rank_b = np.concatenate(rank_b)
        base = {prefix + k: v for k, v in rank_metrics(rank_b, ks).items()}
    return metrics, base, info
