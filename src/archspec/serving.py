"""A torch-free runtime for self-contained exports: raw rows in, predictions out.

Needs only numpy, onnxruntime, and, when the model reads them, tokenizers (text) and Pillow
(images). It reads what ``archspec build RUN --export onnx --out DIR`` writes: the manifest
(``<name>.export.json``), the ONNX graphs and ``preprocess/`` (the run's fitted preprocessing).
Numeric standardisation and integer category lookup are inside the graphs; this module does the
rest as the run's preprocessing does: tokenization, image decoding, text category lookup.

A run with gradient-boosted heads (``type: gbdt``) or members from other runs (``type: run``) is
exported as several ONNX files (see :mod:`archspec.export`): each gbdt head's trees
(``<name>.<head>.gbdt.onnx``: preprocessed features in, raw scores out) and each member run's own
export (``members/<head>/``). :meth:`Predictor.outputs` runs those first and feeds their outputs to
the main graph's inputs ``<head>.gbdt`` / ``<head>.member``; the main graph computes every late
fusion over them, as the trained model does.

Example (not run here: it needs an export)::

    from archspec.serving import Predictor

    p = Predictor("exports/")                        # the only manifest in the directory
    p.predict([{"user_ratings_log": 3.2, ...}])      # columns as `archspec predict` writes them
    p.embed(rows, "candidate")                       # a two-tower export: (n, D) embeddings

    r = Retriever("exports/", "movie_index/")        # the query tower + `archspec index`'s directory
    r.retrieve(rows, k=10)                           # top-k catalogue ids and scores per row
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from .prediction_kinds import kind_home

__all__ = ["Predictor", "Retriever", "ServingError"]

_INT_FLOAT = re.compile(r"^([+-]?\d+)\.0*$")


class ServingError(ValueError):
    """An export directory or a row cannot be served (what is wrong, and what to do)."""


# ----------------------------------------------------------------------------------------- values


def _missing(v) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    try:
        return bool(v != v)  # NaN-like scalars (numpy, pandas NA)
    except (TypeError, ValueError):
        return False


def _label_key(v) -> str:
    """As the run's preprocessing matches categories: ``1``, ``1.0``, ``"1"`` and ``"1.0"`` are ``"1"``."""
    if hasattr(v, "item") and not isinstance(v, (list, tuple)):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, str):
        text = v.strip()
        m = _INT_FLOAT.match(text)
        return m.group(1) if m else text
    return str(v)


def _columns(rows) -> dict:
    """Rows as ``{column: list}`` from a list of dicts, a dict of columns or a DataFrame."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a DataFrame, without importing pandas
        return {str(c): list(rows[c]) for c in rows.columns}
    if isinstance(rows, dict):
        return {k: list(v) for k, v in rows.items()}
    rows = list(rows)
    cols: dict = {}
    for i, r in enumerate(rows):
        for k in r:
            cols.setdefault(k, [None] * len(rows))
        for k in cols:
            cols[k][i] = r.get(k)
    return cols


def _column(cols: dict, name: str, what: str) -> list:
    if name not in cols:
        raise ServingError(f"missing column '{name}' ({what}) — the rows have: {', '.join(list(cols)[:15]) or 'none'}")
    return cols[name]


def _numbers(values: list, column: str) -> np.ndarray:
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ServingError(f"row {i}, column '{column}': {v!r} is not a number") from None
        if not math.isfinite(x):
            raise ServingError(f"row {i}, column '{column}': {v!r} is missing or not finite — give a number")
        out[i] = x
    return out


# ----------------------------------------------------------------------------------------- inputs


class _Inputs:
    """Prepares every input of an export from raw columns, as the manifest says."""

    def __init__(self, root: Path, state: dict):
        self.root = root
        self.state = state  # preprocessor.json
        self._tokenizers: dict = {}

    def tokenizer(self, spec: dict):
        t = spec["transform"]
        path = self.root / t["tokenizer"]
        if path not in self._tokenizers:
            try:
                from tokenizers import Tokenizer
            except ImportError:
                raise ServingError("this export reads text: install `tokenizers`") from None
            if not path.is_file():
                raise ServingError(f"{path}: missing — the export directory is incomplete; export again")
            tok = Tokenizer.from_file(str(path))
            n = int(t["max_length"])
            pad = int(t["pad_id"])
            tok.enable_truncation(n)
            tok.enable_padding(length=n, pad_id=pad, pad_token=tok.id_to_token(pad) or "[PAD]")
            self._tokenizers[path] = tok
        return self._tokenizers[path]

    def make(self, specs: list[dict], cols: dict, n: int, data_dir) -> dict:
        feeds: dict = {}
        for spec in specs:
            name = spec["name"]
            if name in feeds or (spec.get("transform") or {}).get("runtime") in ("gbdt", "member"):
                continue  # computed outside the graph (Predictor.outputs feeds it)
            expects = spec.get("expects")
            if expects is None:
                raise ServingError(f"input '{name}': this export carries no preprocessing (it was exported from "
                                   "a spec, not a trained run) — export the run: archspec build RUN --export onnx")
            kind = spec["kind"]
            if spec.get("columns") is not None:  # numeric: raw float64, standardised in the graph
                feeds[name] = np.stack([_numbers(_column(cols, c, name), c) for c in spec["columns"]], axis=1)
            elif kind == "index" and expects.startswith("raw"):
                feeds[name] = self._int_categories(spec, cols)
            elif kind == "index":
                feeds[name] = self._text_categories(spec, cols)
            elif kind == "tokens" or kind == "attention_mask":
                base = name[:-5] if kind == "attention_mask" else name
                main = next(s for s in specs if s["name"] == base) if kind == "attention_mask" else spec
                texts = ["" if _missing(v) else str(v) for v in _column(cols, main["column"], base)]
                encs = self.tokenizer(main).encode_batch(texts)
                feeds[base] = np.asarray([e.ids for e in encs], dtype=np.int64).reshape(n, -1)
                feeds[base + ".mask"] = np.asarray([e.attention_mask for e in encs], dtype=np.int64).reshape(n, -1)
            elif kind == "image":
                feeds[name] = self._images(spec, _column(cols, spec["column"], name), data_dir)
            elif kind == "audio":
                feeds[name] = self._audio(spec, _column(cols, spec["column"], name), data_dir)
            elif spec.get("width") is not None:
                feeds[name] = self._vectors(spec, cols, n)
            else:
                raise ServingError(f"input '{name}': unknown kind '{kind}' — this runtime is older than the export")
        return feeds

    def _int_categories(self, spec, cols) -> np.ndarray:
        out = []
        for v in _column(cols, spec["column"], spec["name"]):
            key = None if _missing(v) else _label_key(v)
            try:
                out.append(int(key) if key is not None else np.iinfo(np.int64).min)
            except ValueError:
                out.append(np.iinfo(np.int64).min)  # not an integer: not a known category (index 0)
        return np.asarray(out, dtype=np.int64)

    def tree_features(self, entry: dict, cols: dict, n: int) -> np.ndarray:
        """The ``features`` (n, F) float32 of a gbdt head's ONNX file: its inputs preprocessed as the
        run did (numeric standardised in float64 then float32, categories as their index, vectors as
        float32), concatenated in order (the manifest's ``gbdt.<head>.features.layout``)."""
        parts = []
        for spec in entry["inputs"]:
            name = spec["name"]
            if spec.get("expects") is None:
                raise ServingError(f"gbdt input '{name}': this export carries no preprocessing — export the run")
            if spec["kind"] == "index":
                x = self._text_categories(spec, cols).astype(np.float32)  # index, whatever the raw type
            elif spec.get("columns") is not None:
                raw = np.stack([_numbers(_column(cols, c, name), c) for c in spec["columns"]], axis=1)
                t = spec["transform"]
                x = ((raw - np.asarray(t["shift"], dtype=np.float64)) / np.asarray(t["scale"], dtype=np.float64))
            elif spec.get("width") is not None:
                x = self._vectors(spec, cols, n)
            else:
                raise ServingError(f"gbdt input '{name}': kind '{spec['kind']}' — this runtime is older than the export")
            parts.append(np.asarray(x).astype(np.float32).reshape(n, -1))
        return np.concatenate(parts, axis=1) if parts else np.zeros((n, 0), np.float32)

    def _text_categories(self, spec, cols) -> np.ndarray:
        name = spec["name"]
        vocab = self.state["inputs"][name]["vocabulary"]
        index = {k: i + 1 for i, k in enumerate(vocab)}
        return np.asarray([0 if _missing(v) else index.get(_label_key(v), 0)
                           for v in _column(cols, spec["column"], name)], dtype=np.int64)

    def _audio(self, spec, values, data_dir) -> np.ndarray:
        """Waveforms decoded exactly as training decoded them (:func:`archspec.data.audio.decode`)."""
        from .data.audio import decode

        t = spec["transform"]
        out = np.zeros((len(values), int(t["samples"])), dtype=np.float32)
        for i, v in enumerate(values):
            if _missing(v) or not str(v).strip():
                raise ServingError(f"row {i}, column '{spec['column']}': missing audio path")
            p = Path(str(v).strip()).expanduser()
            if not p.is_absolute() and data_dir is not None:
                p = Path(data_dir) / p
            try:
                out[i] = decode(p, int(t["sample_rate"]), int(t["samples"]), t.get("crop", "start"))
            except ImportError as exc:
                raise ServingError(f"this export reads audio: install soundfile and scipy ({exc})") from None
            except (OSError, RuntimeError, ValueError) as exc:
                raise ServingError(f"row {i}, column '{spec['column']}': cannot read audio {p} ({exc})") from None
        return out

    def _images(self, spec, values, data_dir) -> np.ndarray:
        try:
            from PIL import Image
        except ImportError:
            raise ServingError("this export reads images: install Pillow") from None
        t = spec["transform"]
        h, w = (int(x) for x in t["size"])
        c = int(t["channels"])
        out = np.zeros((len(values), c, h, w), dtype=np.float32)
        for i, v in enumerate(values):
            if _missing(v) or not str(v).strip():
                raise ServingError(f"row {i}, column '{spec['column']}': missing image path")
            p = Path(str(v).strip()).expanduser()
            if not p.is_absolute() and data_dir is not None:
                p = Path(data_dir) / p
            try:
                with Image.open(p) as im:
                    im.load()
                    im = im.convert("RGB" if c == 3 else "L").resize((w, h), Image.Resampling.BILINEAR)
            except (OSError, ValueError) as exc:
                raise ServingError(f"row {i}, column '{spec['column']}': cannot read image {p} ({exc})") from None
            px = np.asarray(im, dtype=np.float32).reshape(h, w, c).transpose(2, 0, 1)
            if t["normalize"] != "none":
                px = px / 255.0
            if t["normalize"] == "imagenet":
                mean = np.asarray(t["mean"], np.float32)[:, None, None]
                std = np.asarray(t["std"], np.float32)[:, None, None]
                px = (px - mean) / std
            out[i] = px
        return out

    def _vectors(self, spec, cols, n) -> np.ndarray:
        col, width = spec["column"], int(spec["width"])
        if col not in cols and all(f"{col}_{j}" in cols for j in range(width)):
            return np.stack([_numbers(cols[f"{col}_{j}"], f"{col}_{j}") for j in range(width)], 1).astype(np.float32)
        out = np.zeros((n, width), dtype=np.float64)
        for i, v in enumerate(_column(cols, col, spec["name"])):
            if isinstance(v, str):
                try:
                    v = json.loads(v)
                except ValueError:
                    raise ServingError(f"row {i}, column '{col}': {v!r} is not a list of numbers") from None
            if width == 1 and not isinstance(v, (list, tuple, np.ndarray)):
                v = [v]
            arr = np.asarray(v, dtype=np.float64).reshape(-1)
            if arr.shape != (width,) or not np.isfinite(arr).all():
                raise ServingError(f"row {i}, column '{col}': expected {width} finite numbers")
            out[i] = arr
        return out.astype(np.float32)


# -------------------------------------------------------------------------------------- predictor


def _session(path: Path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ServingError("serving needs onnxruntime: pip install onnxruntime") from None
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class Predictor:
    """Loads an export directory; scores raw rows with the whole model or embeds them with a tower.

    Args:
        export_dir: the directory ``archspec build RUN --export onnx --out DIR`` wrote.
        name: the export's name, when the directory holds several manifests.

    Raises:
        ServingError: no (or several) manifests, no ONNX file, or no preprocessing.
    """

    def __init__(self, export_dir, name: str | None = None):
        root = Path(export_dir)
        found = sorted(root.glob("*.export.json"))
        if name is not None:
            found = [p for p in found if p.name == f"{name}.export.json"]
        if len(found) != 1:
            what = "no export manifest (*.export.json)" if not found else f"several manifests ({', '.join(p.name for p in found)}) — pass name="
            raise ServingError(f"{root}: {what}")
        self.root = root
        self.manifest = json.loads(found[0].read_text())
        if "onnx" not in self.manifest.get("files", {}):
            raise ServingError(f"{found[0]}: no ONNX file — export with --export onnx")
        pre = self.manifest.get("preprocessing")
        if not pre:
            raise ServingError(f"{found[0]}: the export carries no preprocessing (exported from a spec) — export a "
                               "trained run: archspec build RUN --export onnx --out DIR")
        self.inputs = _Inputs(root, json.loads((root / pre["state"]).read_text()))
        self._sessions: dict = {}
        self._members: dict = {}

    def _session(self, file: str):
        if file not in self._sessions:
            if not (self.root / file).is_file():
                raise ServingError(f"{self.root / file}: missing — the export directory is incomplete; export again")
            self._sessions[file] = _session(self.root / file)
        return self._sessions[file]

    def _run(self, file: str, specs: list[dict], rows, data_dir, given=None) -> list[np.ndarray]:
        cols = _columns(rows)
        n = len(next(iter(cols.values()))) if cols else 0
        feeds = {**self.inputs.make(specs, cols, n, data_dir), **(given or {})}
        return self._session(file).run(None, {s["name"]: feeds[s["name"]] for s in specs})

    def _outside(self, rows, data_dir) -> dict:
        """The main graph's inputs computed outside it: each gbdt head's raw scores (its trees' ONNX
        file) and each member run's output (its own export)."""
        m, given = self.manifest, {}
        gbdt, members = m.get("gbdt") or {}, m.get("members") or {}
        if gbdt:
            cols = _columns(rows)
            n = len(next(iter(cols.values()))) if cols else 0
            for head, e in gbdt.items():
                x = self.inputs.tree_features(e, cols, n)
                given[e["output"]["feeds"]] = self._session(e["file"]).run(None, {e["features"]["name"]: x})[0]
        for head, e in members.items():
            if head not in self._members:
                self._members[head] = Predictor(self.root / e["dir"])
            given[e["feeds"]] = self._members[head].outputs(rows, data_dir)[e["output"]].astype(np.float32)
        return given

    def raw_inputs(self) -> list[dict]:
        """The manifest specs of every input read from raw columns: the main graph's, each gbdt head's
        and each member export's (by name, first one kept), for a server to describe and check rows."""
        m, out, seen = self.manifest, [], set()
        specs = [s for s in m["inputs"] if (s.get("transform") or {}).get("runtime") not in ("gbdt", "member")]
        specs += [s for e in (m.get("gbdt") or {}).values() for s in e["inputs"]]
        for head, e in (m.get("members") or {}).items():
            if head not in self._members:
                self._members[head] = Predictor(self.root / e["dir"])
            specs += self._members[head].raw_inputs()
        for spec in specs:
            if spec["name"] not in seen:
                seen.add(spec["name"])
                out.append(spec)
        return out

    def outputs(self, rows, data_dir=None) -> dict[str, np.ndarray]:
        """Every output of the model by name (logits, probabilities, scores, tower embeddings)."""
        m = self.manifest
        values = self._run(m["files"]["onnx"], m["inputs"], rows, data_dir, self._outside(rows, data_dir))
        return {o["name"]: v for o, v in zip(m["outputs"], values)}

    def embed(self, rows, tower: str = "query", head: str | None = None, data_dir=None) -> np.ndarray:
        """``(n, D)`` embeddings of one tower (``query`` or ``candidate``) of a similarity head."""
        sims = self.manifest.get("similarity") or {}
        if not sims:
            raise ServingError("this export has no similarity head, so no towers")
        head = head or next(iter(sims))
        if head not in sims or tower not in sims[head]:
            raise ServingError(f"no tower '{tower}' of head '{head}' — heads: {', '.join(sims)}")
        t = sims[head][tower]
        return self._run(t["files"]["onnx"], t["inputs"], rows, data_dir)[0]

    def predict(self, rows, data_dir=None) -> dict[str, np.ndarray | list]:
        """The columns ``archspec predict`` writes: labels and probabilities (classification),
        values (regression), ``.score`` and ``.prob`` (similarity)."""
        outs = self.outputs(rows, data_dir)
        cols: dict = {}
        for spec in self.manifest["outputs"]:
            task = spec.get("task")
            if task is None:  # a tower's embedding
                continue
            name, out = spec["name"], outs[spec["name"]]
            home = kind_home(task)  # the same column layout and label rule as `archspec predict`
            # a similarity's probability is the sigmoid of its score, as `predict` writes it
            act = "sigmoid" if task == "similarity" else spec.get("activation")
            probs = out if act is None else (_softmax(out) if act == "softmax" else _sigmoid(out))
            labels = spec.get("labels")
            names = [str(x) for x in labels] if isinstance(labels, list) else None
            cols.update(home.columns(name, out, probs, home.decide(probs, spec.get("threshold")), names))
        return cols


# -------------------------------------------------------------------------------------- retrieval


class Retriever:
    """Top-``k`` catalogue items for raw query rows, torch-free: an export's query tower and an
    index directory (``archspec index RUN --data CATALOGUE --out DIR``).

    The index must come from the same run as the export: both record the run's spec hash and
    weights, and a mismatch is refused (the catalogue vectors would not match the query tower).
    Search uses faiss when installed, else an exact numpy search over the index's vectors.

    Args:
        export_dir: the directory ``archspec build RUN --export onnx --out DIR`` wrote.
        index_dir: the index directory.
        name: the export's name, when the directory holds several manifests.
        params: search parameters (``ef_search`` for HNSW, ``nprobe`` for IVF) overriding the index's.

    Example (not run here: it needs an export and an index)::

        r = Retriever("exports/", "movie_index/")
        r.retrieve([{"liked_before": "318 296", "user_ratings_log": 3.2, ...}], k=10, exclude="seen")
        # → [[{"id": 318, "score": 0.83}, ...]]  one list per row, best first

    Raises:
        ServingError: a bad export or index directory, or an index built from another run.
    """

    def __init__(self, export_dir, index_dir, name: str | None = None, params: dict | None = None):
        from .retrieval import RetrievalError, load_index

        self.predictor = Predictor(export_dir, name)
        try:
            self.index = load_index(index_dir, params=params)
        except RetrievalError as exc:
            raise ServingError(str(exc)) from None
        m = self.index.manifest
        self.head = m["head"]
        sims = self.predictor.manifest.get("similarity") or {}
        if "query" not in sims.get(self.head, {}):
            raise ServingError(f"{export_dir}: the export has no query tower of head '{self.head}', which the index "
                               f"{index_dir} was built for — export the run the index came from")
        run = self.predictor.manifest.get("run") or {}
        if run and (run.get("spec_sha256"), run.get("weights")) != (m.get("spec_sha256"), m.get("weights")):
            raise ServingError(f"{index_dir} was built from another model than the export {export_dir} (spec or "
                               "weights differ) — its vectors would not match the query tower; build the index "
                               "and the export from the same run")
        self.query_inputs = sims[self.head]["query"]["inputs"]

    def retrieve(self, rows, k: int = 10, exclude: str | None = None, data_dir=None) -> list[list[dict]]:
        """``[{"id", "score"}, ...]`` (best first) per row; ``exclude`` names a column of ids the row
        has already seen (a list, or ids separated by ``|`` or ``,``), left out of its results."""
        from .retrieval import _seen, top_k

        if int(k) < 1:
            raise ServingError(f"k must be at least 1, got {k}")
        cols = _columns(rows)
        seen = [_seen(v) for v in _column(cols, exclude, "ids to exclude")] if exclude else None
        emb = self.predictor.embed(rows, "query", self.head, data_dir)
        return [[{"id": i, "score": s} for i, s in hits] for hits in top_k(self.index, emb, int(k), seen)]
