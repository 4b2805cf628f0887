"""``archspec serve RUN|EXPORT_DIR``: an HTTP prediction server (FastAPI + uvicorn).

A run directory is served through :mod:`archspec.inference` (torch, the run's best checkpoint); an
export directory (``archspec build RUN --export onnx --out DIR``) through the torch-free runtime
:mod:`archspec.serving` (onnxruntime). Both answer with the columns ``archspec predict`` writes.

- ``POST /predict`` takes ``{"rows": [{column: value, ...}, ...]}``, the same columns as the data
  files (target columns are not needed, extra columns are ignored); an image is a file path (relative
  to the server's working directory), a ``data:image/...;base64,...`` URL, or ``{"base64": "..."}``.
  It answers ``{"predictions": [{...}, ...]}``, one object per row with exactly the columns
  ``archspec predict`` writes.
- ``POST /retrieve`` (a two-tower run or export served with ``--index DIR``, an index that
  ``archspec index`` built from the same run) takes ``{"rows": [...], "k": 10, "exclude": COLUMN}``,
  the query tower's columns, and answers ``{"results": [[{"id": ..., "score": ...}, ...], ...]}``:
  per row the ``k`` best catalogue items, best first, leaving out the ids listed in the row's
  ``exclude`` column. Without ``--index`` it answers 404 and says how to start the server.
- ``GET /health`` and ``GET /metadata`` (spec name, inputs with their types and columns, predictions
  with their kinds and labels, the checkpoint served).
- Concurrent requests are batched: a request waits at most ``max_wait_ms`` for others to join it,
  and a batch holds at most ``max_batch`` rows, so many small requests run as few forward passes.
- A user's mistake is a 4xx whose body names the field (``rows[3].rating``) and says what is wrong:
  ``{"error": "...", "field": "...", "detail": [...]}``. A 500 means a bug in archspec.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from .errors import ArchspecError, CheckpointError, DataError

MAX_ROWS = 10_000  # per request


class PredictRequest(BaseModel):
    """The body of ``POST /predict``."""

    model_config = ConfigDict(extra="forbid")
    rows: list
    """One object per row: column name → value, the columns of the data files."""


class RetrieveRequest(BaseModel):
    """The body of ``POST /retrieve``."""

    model_config = ConfigDict(extra="forbid")
    rows: list
    """One object per query row: the query tower's columns."""
    k: int = Field(10, ge=1, le=1000)
    """How many catalogue items to return per row."""
    exclude: str | None = None
    """A column of each row listing ids it has already seen (a list, or ids separated by ``|``/``,``)."""


class RequestError(ArchspecError):
    """A request that does not fit the served model (answered with 422, naming the field)."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


def load_predictor(path) -> "Predictor":
    """A :class:`Predictor` for a run directory, or an :class:`ExportPredictor` for an export directory.

    Raises:
        CheckpointError: neither a trained run nor an export directory.
    """
    path = Path(path)
    if (path / "spec.yaml").is_file() and (path / "checkpoints").is_dir():
        return Predictor(path)
    if path.is_dir() and any(path.glob("*.export.json")):
        return ExportPredictor(path)
    raise CheckpointError(f"{path} is neither a trained run directory (spec.yaml, checkpoints/) nor an export "
                          "directory (*.export.json from `archspec build RUN --export onnx --out DIR`)")


class Predictor:
    """A trained run ready to answer rows: its model, preprocessing and input columns."""

    def __init__(self, run_dir):
        from .inference import load_run

        run_dir = Path(run_dir)
        if not (run_dir / "spec.yaml").is_file() or not (run_dir / "checkpoints").is_dir():
            raise CheckpointError(f"{run_dir} is not a trained run directory (no spec.yaml / checkpoints/)")
        self.run_dir = run_dir
        self.loaded = load_run(run_dir)
        model, pre, checked = self.loaded
        self.checked = checked
        self.name = checked.spec.name
        from .data.columns import input_columns

        self.inputs = {}
        for name, cfg in checked.spec.inputs.items():
            self.inputs[name] = {"type": cfg.type, "columns": list(input_columns(cfg))}
            if cfg.type == "vector":
                self.inputs[name]["width"] = cfg.width
        self.tmp = tempfile.TemporaryDirectory(prefix="archspec-serve-")
        self._n = 0

    def metadata(self) -> dict:
        from . import __version__
        from . import checkpoint as ckpt
        from .graph import prediction_kind
        from .outputs import label_names

        model, pre, checked = self.loaded
        preds = []
        for name in model.predictions:
            preds.append({"name": name, "kind": prediction_kind(checked.graph, name),
                          "labels": label_names(model, pre, name)})
        which = "best" if ckpt.read_pointer(self.run_dir / "checkpoints", "best", missing_ok=True) else "last"
        pointer = ckpt.read_pointer(self.run_dir / "checkpoints", which)
        return {"spec": checked.spec.name, "description": checked.spec.description, "source": "run",
                "inputs": [{"name": n, **v} for n, v in self.inputs.items()],
                "predictions": preds,
                "checkpoint": {"run": str(self.run_dir.resolve()), "which": which, "step": pointer.get("step"),
                               "weights": pointer.get("weights")},
                "archspec": __version__}

    def check_rows(self, rows, only=None) -> None:
        """Type checks that name the field (of the inputs named in ``only``, default all); the data
        layer's pre-flight checks the rest."""
        if not isinstance(rows, list) or not rows:
            raise RequestError("`rows` must be a non-empty list of objects (one per row)", "rows")
        if len(rows) > MAX_ROWS:
            raise RequestError(f"{len(rows)} rows in one request; at most {MAX_ROWS}", "rows")
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise RequestError(f"expected an object of column values, got {type(row).__name__}", f"rows[{i}]")
            for name, info in self.inputs.items():
                if only is not None and name not in only:
                    continue
                kind = info["type"]
                cols = info["columns"]
                if kind == "vector" and cols[0] not in row and all(
                        f"{cols[0]}_{j}" in row for j in range(info.get("width", 0))) and info.get("width"):
                    continue
                for col in cols:
                    field = f"rows[{i}].{col}"
                    if col not in row:
                        raise RequestError(f"missing column '{col}' (input '{name}', {kind})", field)
                    v = row[col]
                    if kind == "numeric" and (isinstance(v, bool) or not isinstance(v, (int, float))
                                              or not math.isfinite(float(v))):
                        raise RequestError(f"expected a finite number, got {_show(v)}", field)
                    if kind == "text" and not isinstance(v, str):
                        raise RequestError(f"expected a string, got {_show(v)}", field)
                    if kind == "categorical" and (v is None or not isinstance(v, (str, int, float))):
                        raise RequestError(f"expected a category (string or number), got {_show(v)}", field)
                    if kind == "image" and not (isinstance(v, str) or (isinstance(v, dict) and set(v) == {"base64"})):
                        raise RequestError("expected an image: a file path, a data: URL or {\"base64\": ...}, "
                                           f"got {_show(v)}", field)
                    if kind == "vector" and (not isinstance(v, list) or not all(
                            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
                        raise RequestError(f"expected a list of numbers, got {_show(v)}", field)

    def _materialise_images(self, rows: list[dict]) -> list[dict]:
        """Write base64 images to files in the server's scratch folder; the data layer reads paths."""
        cols = [info["columns"][0] for info in self.inputs.values() if info["type"] == "image"]
        if not cols:
            return rows
        out = []
        for i, row in enumerate(rows):
            row = dict(row)
            for col in cols:
                v = row.get(col)
                data = None
                if isinstance(v, dict):
                    data = v["base64"]
                elif isinstance(v, str) and v.startswith("data:"):
                    head, _, data = v.partition(",")
                    if ";base64" not in head:
                        raise RequestError("a data: URL image must be base64 (data:image/png;base64,...)",
                                           f"rows[{i}].{col}")
                if data is not None:
                    try:
                        raw = base64.b64decode(data, validate=True)
                    except (binascii.Error, ValueError, TypeError):
                        raise RequestError("the image is not valid base64", f"rows[{i}].{col}") from None
                    self._n += 1
                    path = Path(self.tmp.name) / f"img-{self._n}"
                    path.write_bytes(raw)
                    row[col] = str(path)
            out.append(row)
        return out

    def _cleanup(self, rows: list[dict]) -> None:
        """Delete the files :meth:`_materialise_images` wrote for ``rows``."""
        for row in rows:
            for v in row.values():
                if isinstance(v, str) and v.startswith(self.tmp.name):
                    Path(v).unlink(missing_ok=True)

    def predict(self, rows: list[dict]) -> list[dict]:
        """Predictions for already type-checked rows (run in the server's worker thread)."""
        import pandas as pd

        from .inference import predict_frame

        files = self._materialise_images(rows)
        try:
            df = pd.DataFrame(files)
            result = predict_frame(self.loaded, df, Path.cwd(), file="request")
        finally:
            self._cleanup(files)
        return [{k: _plain(v) for k, v in rec.items()} for rec in result.to_dict(orient="records")]


class ExportPredictor(Predictor):
    """An export directory served by the torch-free runtime (:class:`archspec.serving.Predictor`)."""

    _KINDS = {"index": "categorical", "tokens": "text", "image": "image"}

    def __init__(self, export_dir):
        from .serving import Predictor as Runtime, ServingError

        self.run_dir = Path(export_dir)
        try:
            self.runtime = Runtime(export_dir)
        except ServingError as exc:
            raise CheckpointError(str(exc)) from None
        m = self.runtime.manifest
        self.name = m.get("name") or self.run_dir.name
        self.inputs = {}
        for spec in self.runtime.raw_inputs():  # gbdt heads and member runs read their own columns
            if spec.get("kind") == "attention_mask":
                continue
            if spec.get("columns") is not None:
                info = {"type": "numeric", "columns": list(spec["columns"])}
            elif spec.get("width") is not None and spec.get("kind") not in self._KINDS:
                info = {"type": "vector", "columns": [spec["column"]], "width": int(spec["width"])}
            else:
                info = {"type": self._KINDS.get(spec.get("kind"), str(spec.get("kind"))), "columns": [spec["column"]]}
            self.inputs[spec["name"]] = info
        self.tmp = tempfile.TemporaryDirectory(prefix="archspec-serve-")
        self._n = 0

    def metadata(self) -> dict:
        from . import __version__

        m = self.runtime.manifest
        preds = [{"name": o["name"], "kind": o["task"], "labels": o.get("labels")}
                 for o in m["outputs"] if o.get("task") is not None]
        return {"spec": self.name, "description": None, "source": "export",
                "inputs": [{"name": n, **v} for n, v in self.inputs.items()], "predictions": preds,
                "checkpoint": {"export": str(self.run_dir.resolve()), "files": m.get("files"),
                               "exported_by": m.get("archspec")},
                "archspec": __version__}

    def predict(self, rows: list[dict]) -> list[dict]:
        from .serving import ServingError

        files = self._materialise_images(rows)
        try:
            cols = self.runtime.predict(files, data_dir=Path.cwd())
        except ServingError as exc:
            raise RequestError(str(exc), _serving_field(str(exc))) from None
        finally:
            self._cleanup(files)
        out = [{} for _ in rows]
        for k, values in cols.items():
            for i, v in enumerate(values):
                out[i][k] = _plain(v)
        return out


class RunRetriever:
    """``POST /retrieve`` for a trained run: its query tower (torch) and an index of the same run."""

    def __init__(self, predictor: Predictor, index_dir):
        from .retrieval import load_index, tower_of

        self.predictor = predictor
        self.index = load_index(index_dir, predictor.run_dir)  # refuses an index of another run
        self.tower = tower_of(predictor.loaded, "query", self.index.manifest["head"], str(predictor.run_dir))
        self.inputs = list(self.tower.inputs)

    def retrieve(self, rows: list[dict], k: int, exclude: str | None) -> list[list[dict]]:
        import pandas as pd

        from .retrieval import _seen, embed_frame, top_k

        files = self.predictor._materialise_images(rows)
        try:
            emb = embed_frame(self.tower, pd.DataFrame(files), Path.cwd(), file="request")
        finally:
            self.predictor._cleanup(files)
        seen = [_seen(r.get(exclude)) for r in rows] if exclude else None
        return [[{"id": _plain(i), "score": s} for i, s in hits] for hits in top_k(self.index, emb, k, seen)]


class ExportRetriever:
    """``POST /retrieve`` for an export directory: :class:`archspec.serving.Retriever` (torch-free)."""

    def __init__(self, predictor: "ExportPredictor", index_dir):
        from .serving import Retriever, ServingError

        self.predictor = predictor
        try:
            self.runtime = Retriever(predictor.run_dir, index_dir)
        except ServingError as exc:
            raise CheckpointError(str(exc)) from None
        self.inputs = [s["name"] for s in self.runtime.query_inputs if s["name"] in predictor.inputs]

    def retrieve(self, rows: list[dict], k: int, exclude: str | None) -> list[list[dict]]:
        from .serving import ServingError

        files = self.predictor._materialise_images(rows)
        try:
            hits = self.runtime.retrieve(files, k=k, exclude=exclude, data_dir=Path.cwd())
        except ServingError as exc:
            raise RequestError(str(exc), _serving_field(str(exc))) from None
        finally:
            self.predictor._cleanup(files)
        return [[{"id": _plain(h["id"]), "score": h["score"]} for h in row] for row in hits]


def load_retriever(predictor, index_dir):
    """The retriever for ``predictor`` (run or export) over ``index_dir``."""
    return (ExportRetriever if isinstance(predictor, ExportPredictor) else RunRetriever)(predictor, index_dir)


def _serving_field(message: str) -> str:
    """``rows[i].col`` from the runtime's ``row i, column 'col': ...`` messages."""
    import re

    m = re.search(r"row (\d+), column '([^']+)'", message)
    if m:
        return f"rows[{m.group(1)}].{m.group(2)}"
    m = re.search(r"missing column '([^']+)'", message)
    return f"rows.{m.group(1)}" if m else "rows"


def _show(v) -> str:
    import json

    try:
        text = json.dumps(v)
    except (TypeError, ValueError):
        text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _plain(v):
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class Batcher:
    """Merges concurrent requests into batches of at most ``max_batch`` rows; a request waits at most
    ``max_wait_s`` for others. Inference runs in one worker thread, off the event loop."""

    def __init__(self, fn, max_batch: int = 64, max_wait_s: float = 0.005):
        self.fn, self.max_batch, self.max_wait_s = fn, max_batch, max_wait_s
        self.queue: asyncio.Queue | None = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archspec-infer")
        self.task = None
        self.batches = 0
        self.rows = 0

    def start(self):
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self):
        if self.task:
            self.task.cancel()
        self.pool.shutdown(wait=False)

    async def submit(self, rows: list[dict]) -> list[dict]:
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((rows, fut))
        return await fut

    async def _run(self):
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            n = len(items[0][0])
            deadline = loop.time() + self.max_wait_s
            while n < self.max_batch:
                if not self.queue.empty():
                    nxt = self.queue.get_nowait()
                else:
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(self.queue.get(), timeout)
                    except asyncio.TimeoutError:
                        break
                if n + len(nxt[0]) > self.max_batch:
                    await self._execute(loop, items)  # the newcomer starts the next batch
                    items, n = [nxt], len(nxt[0])
                    deadline = loop.time() + self.max_wait_s
                    continue
                items.append(nxt)
                n += len(nxt[0])
            await self._execute(loop, items)

    async def _execute(self, loop, items):
        rows = [r for batch, _ in items for r in batch]
        self.batches += 1
        self.rows += len(rows)
        try:
            out = await loop.run_in_executor(self.pool, self.fn, rows)
        except Exception:  # noqa: BLE001 - one bad request must not fail the others: run each alone
            if len(items) == 1:
                out = None
            else:
                for batch, fut in items:
                    try:
                        res = await loop.run_in_executor(self.pool, self.fn, batch)
                        if not fut.done():
                            fut.set_result(res)
                    except Exception as exc:  # noqa: BLE001
                        if not fut.done():
                            fut.set_exception(exc)
                return
            try:
                out = await loop.run_in_executor(self.pool, self.fn, rows)
            except Exception as exc:  # noqa: BLE001
                if not items[0][1].done():
                    items[0][1].set_exception(exc)
                return
        start = 0
        for batch, fut in items:
            if not fut.done():
                fut.set_result(out[start:start + len(batch)])
            start += len(batch)


def _error(status: int, message: str, field: str = "", detail=None):
    from fastapi.responses import JSONResponse

    body = {"error": message, "field": field}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(status_code=status, content=body)


def make_app(predictor, max_batch: int = 64, max_wait_ms: float = 5.0, retriever=None):
    """The FastAPI application serving ``predictor`` (and ``POST /retrieve`` with a ``retriever``)."""
    try:
        from contextlib import asynccontextmanager

        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
    except ImportError:
        raise ArchspecError("`archspec serve` needs FastAPI and uvicorn: pip install 'archspec[serve]'") from None
    batcher = Batcher(predictor.predict, max_batch=max_batch, max_wait_s=max_wait_ms / 1000)

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title=f"archspec: {predictor.name}", lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        field = "".join(f"[{p}]" if p.isdigit() else (f".{p}" if i else p) for i, p in enumerate(loc)) or "body"
        msg = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            msg, field = "the body is not valid JSON: " + str(first.get("ctx", {}).get("error", "")), "body"
        elif first.get("type") == "missing":
            msg = f"missing field '{field}'; send {{\"rows\": [{{column: value, ...}}]}}"
        elif field == "body" or first.get("type") == "model_attributes_type":
            msg, field = ("the body must be a JSON object {\"rows\": [...]} sent with "
                          "Content-Type: application/json"), "body"
        elif first.get("type") == "extra_forbidden":
            msg = f"unknown field '{field}'; send {{\"rows\": [...]}}"
        detail = [{"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "message": e.get("msg")}
                  for e in errs]
        return _error(422, msg, field, detail)

    @app.get("/health")
    async def health():
        return {"status": "ok", "spec": predictor.name}

    @app.get("/metadata")
    async def metadata():
        import sys

        index = None
        if retriever is not None:
            m = retriever.index.manifest if hasattr(retriever, "index") else retriever.runtime.index.manifest
            index = {k: m.get(k) for k in ("head", "kind", "similarity", "count", "id_column", "params")}
        return {**predictor.metadata(), "batching": {"max_batch": max_batch, "max_wait_ms": max_wait_ms},
                "index": index, "torch_loaded": "torch" in sys.modules}

    @app.post("/predict")
    async def predict(req: PredictRequest):
        try:
            predictor.check_rows(req.rows)
            preds = await batcher.submit(req.rows)
        except RequestError as exc:
            return _error(422, str(exc), exc.field)
        except DataError as exc:
            return _error(422, str(exc), _field_of(str(exc), predictor))
        return {"predictions": preds}

    lock = asyncio.Lock()  # one search at a time: the model and the index use the machine's cores

    @app.post("/retrieve")
    async def retrieve(req: RetrieveRequest):
        if retriever is None:
            return _error(404, "this server has no catalogue index — start it with `archspec serve RUN --index DIR` "
                          "(DIR from `archspec index RUN --data CATALOGUE --out DIR`)", "")
        try:
            predictor.check_rows(req.rows, only=retriever.inputs)
            if req.exclude is not None:
                for i, row in enumerate(req.rows):
                    if req.exclude not in row:
                        raise RequestError(f"missing column '{req.exclude}' (the ids to exclude)",
                                           f"rows[{i}].{req.exclude}")
            async with lock:
                results = await asyncio.to_thread(retriever.retrieve, req.rows, req.k, req.exclude)
        except RequestError as exc:
            return _error(422, str(exc), exc.field)
        except DataError as exc:
            return _error(422, str(exc), _field_of(str(exc), predictor))
        return {"results": results}

    return app


def _field_of(message: str, predictor) -> str:
    """The field a data-layer message is about (``request:ROW:COLUMN: ...``, rows 1-based)."""
    import re

    m = re.search(r"^request:(\d+):([^:\s]+):", message, re.M)
    if m:
        return f"rows[{int(m.group(1)) - 1}].{m.group(2)}"
    for info in predictor.inputs.values():
        for col in info["columns"]:
            if f"'{col}'" in message or f"column {col}" in message:
                return col
    return "rows"


def serve(run_dir, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 64, max_wait_ms: float = 5.0,
          log_level: str = "info", index=None) -> None:
    """Load a run and serve it until interrupted.

    Raises:
        CheckpointError: not a run directory. ArchspecError: FastAPI/uvicorn missing.
    """
    if max_batch < 1 or max_wait_ms < 0:
        raise ArchspecError("--max-batch must be >= 1 and --max-wait-ms >= 0")
    try:
        import uvicorn
    except ImportError:
        raise ArchspecError("`archspec serve` needs FastAPI and uvicorn: pip install 'archspec[serve]'") from None
    predictor = load_predictor(run_dir)
    retriever = load_retriever(predictor, index) if index is not None else None
    app = make_app(predictor, max_batch=max_batch, max_wait_ms=max_wait_ms, retriever=retriever)
    routes = "POST /predict, " + ("POST /retrieve, " if retriever is not None else "") + "GET /health, GET /metadata"
    print(f"serving {predictor.name} from {run_dir} on http://{host}:{port} ({routes})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
