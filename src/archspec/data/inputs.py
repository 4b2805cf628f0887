"""One home per input type: the columns it reads, its pre-flight check, its streaming fit, its state
and its transform, registered under the spec's ``type`` name (torch-free).

Every other module asks the home instead of switching on the type: :mod:`.preflight` calls
:meth:`InputData.missing` and :meth:`InputData.check`, :class:`~.preprocess.Preprocessor` calls
:meth:`InputData.fitter`, :meth:`InputData.transform`, :meth:`InputData.validate` and the
save/load hooks. Adding a type is one class here (see the ``archspec.data`` package docstring).

A transform returns numpy arrays keyed by the model's input keys (the input's name, plus e.g.
``name.mask`` for text); the data loader turns them into tensors in its worker processes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..registry import RegistryError
from . import convert
from .columns import prefixed, vector_layout
from .audio import check_audio, load_audio
from .images import check_images, load_images
from .problems import Problem


@dataclass(frozen=True)
class Context:
    """Where a value comes from: the input node (``inputs.NAME``), image paths' and spec's directories."""

    node: str
    data_dir: Path | None = None
    base_dir: Path | None = None


class Fitter:
    """Fits an input's state in one streaming pass: ``update(chunk)`` per DataFrame, then ``finish()``.

    The default fits nothing (images, vectors): their state is their config.
    """

    #: columns the fit reads (``None``: the input reads nothing to fit, so the pass can skip it)
    columns: list[str] | None = None

    def update(self, df: pd.DataFrame) -> None:
        """Take in one chunk of training rows (index = file row)."""

    def finish(self) -> tuple[dict, object | None, list[Problem]]:
        """``(state, extra, problems)``: JSON-able state, a non-JSON object (a tokenizer) or ``None``."""
        return {}, None, []


class InputData(ABC):
    """The data behaviour of one input type. Subclasses override what differs from a one-column input."""

    type: str = ""
    #: per-row work worth worker processes (decoding, tokenizing): the default ``num_workers`` > 0
    heavy: bool = False

    def spec_columns(self, cfg) -> list[str]:
        """The columns as the spec names them (a vector may instead live in ``column_0 …``)."""
        return [cfg.column]

    def columns(self, cfg, available) -> list[str] | None:
        """The columns this input reads in a file with ``available`` columns (``None``: not there)."""
        return [cfg.column] if cfg.column in set(available) else None

    def missing(self, cfg, available) -> list[tuple[str, str]]:
        """``(column, note)`` for every column the input needs that ``available`` lacks."""
        return [] if cfg.column in set(available) else [(cfg.column, "")]

    def check(self, cfg, df: pd.DataFrame, ctx: Context) -> list[Problem]:
        """Pre-flight problems in a chunk of rows: cheap (no image is decoded), located by row and column."""
        return []

    def fit_columns(self, cfg, available) -> list[str]:
        """The columns the fit reads (none by default: the streaming fit pass skips the input)."""
        return []

    def fitter(self, cfg, ctx: Context) -> Fitter:
        """A :class:`Fitter` for the training rows."""
        return Fitter()

    @abstractmethod
    def transform(self, cfg, state: dict, extra, df: pd.DataFrame, ctx: Context) -> tuple[dict, list[Problem]]:
        """``({key: array (B, ...)}, problems)`` for a batch of rows; problem rows may hold anything."""

    def validate(self, cfg, state: dict) -> str | None:
        """What is wrong with a saved state (a corrupt or edited file), or ``None``."""
        return None

    def save_extra(self, extra, directory: Path) -> None:
        """Write the non-JSON part of the state (e.g. a tokenizer) into ``directory``."""

    def load_extra(self, cfg, state: dict, directory: Path):
        """Read what :meth:`save_extra` wrote; ``None`` when the type has nothing there."""
        return None


INPUT_DATA: dict[str, InputData] = {}


def register_input_data(name: str):
    """Class decorator: the data home of input type ``name`` (one per type; a duplicate is an error)."""

    def deco(cls):
        if name in INPUT_DATA:
            raise RegistryError(f"duplicate data home for input type '{name}'")
        inst = cls()
        inst.type = name
        INPUT_DATA[name] = inst
        return cls

    return deco


def input_data(type_name: str) -> InputData:
    """The home of an input type.

    Raises:
        BuildError: no home is registered for it.
    """
    home = INPUT_DATA.get(type_name)
    if home is None:
        from ..errors import BuildError

        raise BuildError(f"no data preprocessing for input type '{type_name}' — known: "
                         f"{', '.join(sorted(INPUT_DATA))}")
    return home


# ----------------------------------------------------------------------------------------- numeric


class _RunningScale(Fitter):
    """Mean/variance (Chan et al.'s pairwise update) and min/max per column, over finite values."""

    def __init__(self, cfg, ctx):
        self.cfg, self.ctx, self.columns = cfg, ctx, list(cfg.columns)
        k = len(self.columns)
        self.n, self.mean, self.m2 = np.zeros(k), np.zeros(k), np.zeros(k)
        self.lo, self.hi = np.full(k, np.inf), np.full(k, -np.inf)

    def update(self, df):
        for j, c in enumerate(self.columns):
            x, _ = convert.numbers(df[c], c, f"{self.ctx.node} value")
            x = x[np.isfinite(x)]  # problem rows are reported by the pre-flight (or skipped)
            if not len(x):
                continue
            n_b, mean_b = len(x), float(x.mean())
            m2_b = float(((x - mean_b) ** 2).sum())
            n = self.n[j] + n_b
            delta = mean_b - self.mean[j]
            self.mean[j] += delta * n_b / n
            self.m2[j] += m2_b + delta * delta * self.n[j] * n_b / n
            self.n[j] = n
            self.lo[j], self.hi[j] = min(self.lo[j], x.min()), max(self.hi[j], x.max())

    def finish(self):
        norm = self.cfg.normalize
        if norm == "standard":
            shift, scale = self.mean, np.sqrt(self.m2 / np.maximum(self.n, 1))
        elif norm == "minmax":
            shift, scale = self.lo, self.hi - self.lo
        else:
            shift, scale = np.zeros(len(self.columns)), np.ones(len(self.columns))
        shift = np.where(np.isfinite(shift), shift, 0.0)
        scale = np.where((scale > 0) & np.isfinite(scale), scale, 1.0)  # a constant column gets scale 1
        return {"shift": [float(v) for v in shift], "scale": [float(v) for v in scale]}, None, []


@register_input_data("numeric")
class NumericData(InputData):
    """Columns of numbers → float32 ``(B, n)``, normalised with statistics of the training rows."""

    def spec_columns(self, cfg):
        return list(cfg.columns)

    def columns(self, cfg, available):
        available = set(available)
        return list(cfg.columns) if all(c in available for c in cfg.columns) else None

    def missing(self, cfg, available):
        available = set(available)
        return [(c, "") for c in cfg.columns if c not in available]

    def check(self, cfg, df, ctx):
        return [p for c in cfg.columns if c in df.columns for p in convert.numbers(df[c], c, f"{ctx.node} value")[1]]

    def fit_columns(self, cfg, available):
        return self.columns(cfg, available) or []

    def fitter(self, cfg, ctx):
        return _RunningScale(cfg, ctx)

    def transform(self, cfg, state, extra, df, ctx):
        parts, problems = [], []
        for c in cfg.columns:
            a, p = convert.numbers(df[c], c, f"{ctx.node} value")
            parts.append(a)
            problems += p
        x = np.stack(parts, axis=1) if parts else np.zeros((len(df), 0))  # (B, n) float64
        x = (x - np.asarray(state["shift"])) / np.asarray(state["scale"])
        return {ctx.node.split(".", 1)[1]: x.astype(np.float32)}, problems

    def validate(self, cfg, state):
        for key in ("shift", "scale"):
            v = state.get(key)
            if not (isinstance(v, list) and len(v) == len(cfg.columns)
                    and all(isinstance(x, (int, float)) and np.isfinite(x) for x in v)):
                return f"{key} is not {len(cfg.columns)} finite numbers"
        if any(x == 0 for x in state["scale"]):
            return "scale holds a zero"
        return None


# ------------------------------------------------------------------------------------- categorical


class _CategoryCounts(Fitter):
    def __init__(self, cfg):
        self.cfg, self.columns, self.counts = cfg, [cfg.column], Counter()

    def update(self, df):
        self.counts.update(convert.label_key(v) for v in df[self.cfg.column] if not convert.is_missing(v))

    def finish(self):
        if self.cfg.categories is not None:
            return {"vocabulary": [str(c) for c in self.cfg.categories]}, None, []
        ranked = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))  # ties alphabetically
        return {"vocabulary": [k for k, _ in ranked[: self.cfg.max_categories]]}, None, []


@register_input_data("categorical")
class CategoricalData(InputData):
    """One column of categories → int64 ``(B,)``; 0 = unseen or missing, ``i + 1`` = ``vocabulary[i]``."""

    def fit_columns(self, cfg, available):
        return [] if cfg.categories is not None else self.columns(cfg, available) or []

    def fitter(self, cfg, ctx):
        if cfg.categories is not None:
            f = _CategoryCounts(cfg)
            f.columns = None  # declared: nothing to read
            return f
        return _CategoryCounts(cfg)

    def transform(self, cfg, state, extra, df, ctx):
        index = {k: i + 1 for i, k in enumerate(state["vocabulary"])}
        ids = [0 if convert.is_missing(v) else index.get(convert.label_key(v), 0) for v in df[cfg.column]]
        return {ctx.node.split(".", 1)[1]: np.asarray(ids, dtype=np.int64).reshape(len(df))}, []

    def validate(self, cfg, state):
        v = state.get("vocabulary")
        if not (isinstance(v, list) and all(isinstance(x, str) for x in v) and len(v) <= cfg.cardinality - 1):
            return f"vocabulary is not a list of at most {cfg.cardinality - 1} strings"
        return None


# -------------------------------------------------------------------------------------------- text

TOKENIZER_DIR = "tokenizers"


def _tokenizer(type_name: str):
    from ..registry import REGISTRIES
    from . import text  # noqa: F401  (registers the built-in tokenizers)

    return REGISTRIES["tokenizer"].builders.get(type_name)


class _TextFit(Fitter):
    """Fits the input's tokenizer type (a ``tokenizer`` registry builder): chunk by chunk when it has
    ``streaming(cfg)`` (``wordpiece``: word counts), else from the collected texts at the end (a plugin
    tokenizer without a streaming fit holds the training text in memory), or from nothing
    (``needs_texts = False``: ``pretrained``)."""

    def __init__(self, cfg, ctx):
        self.cfg, self.ctx = cfg, ctx
        self.builder = _tokenizer(cfg.tokenizer.type)
        self.update_fn = self.finish_fn = None
        self.texts: list[str] | None = None
        self.columns = [cfg.column] if getattr(self.builder, "needs_texts", True) else None
        if self.columns and hasattr(self.builder, "streaming"):
            self.update_fn, self.finish_fn = self.builder.streaming(cfg.tokenizer)
        elif self.columns:
            self.texts = []

    def update(self, df):
        from .text import texts_of

        texts = texts_of(df[self.cfg.column])
        if self.update_fn is not None:
            self.update_fn(texts)
        else:
            self.texts += texts

    def finish(self):
        cfg = self.cfg
        if self.finish_fn is not None:
            enc = self.finish_fn(cfg.max_length)
        else:
            enc = self.builder.fit(cfg.tokenizer, self.texts or [], cfg.max_length, self.ctx.base_dir, self.ctx.node)
        return {"tokenizer": enc.kind, "vocab_size": enc.vocab_size, "pad_id": enc.pad_id}, enc, []


@register_input_data("text")
class TextData(InputData):
    """Text → int64 token ids ``(B, max_length)`` and ``name.mask`` (1 = token, 0 = padding)."""

    heavy = True

    def fit_columns(self, cfg, available):
        needs = getattr(_tokenizer(cfg.tokenizer.type), "needs_texts", True)
        return self.columns(cfg, available) or [] if needs else []

    def fitter(self, cfg, ctx):
        return _TextFit(cfg, ctx)

    def transform(self, cfg, state, extra, df, ctx):
        from .text import texts_of

        name = ctx.node.split(".", 1)[1]
        ids, mask = extra.encode(texts_of(df[cfg.column]))
        return {name: ids, name + ".mask": mask}, []

    def save_extra(self, extra, directory):
        extra.save(directory)

    def load_extra(self, cfg, state, directory):
        from ..errors import CheckpointError

        loader = _tokenizer(state.get("tokenizer"))
        if loader is None:
            raise CheckpointError(f"{directory}: input '{cfg.column}' was fitted with an unknown tokenizer "
                                  f"{state.get('tokenizer')!r} — is the plugin that provides it installed?")
        return loader.load(directory, cfg.max_length)


# ------------------------------------------------------------------------------------------- image


@register_input_data("image")
class ImageData(InputData):
    """Image files → float32 ``(B, C, H, W)``, decoded and resized per batch (in loader workers).

    The pre-flight reads each file's header only (open + verify); nothing is fitted.
    """

    heavy = True

    def check(self, cfg, df, ctx):
        return check_images(df[cfg.column], cfg.column, ctx.data_dir, ctx.node)

    def transform(self, cfg, state, extra, df, ctx):
        px, problems = load_images(df[cfg.column], cfg.column, ctx.data_dir, cfg.size, cfg.channels,
                                   cfg.normalize, ctx.node)
        return {ctx.node.split(".", 1)[1]: px}, problems


# ------------------------------------------------------------------------------------------- audio


@register_input_data("audio")
class AudioData(InputData):
    """Sound files → mono float32 ``(B, samples)``, decoded and resampled per batch (in loader workers).

    The pre-flight reads each file's header only; nothing is fitted.
    """

    heavy = True

    def check(self, cfg, df, ctx):
        return check_audio(df[cfg.column], cfg.column, ctx.data_dir, ctx.node)

    def transform(self, cfg, state, extra, df, ctx):
        wave, problems = load_audio(df[cfg.column], cfg.column, ctx.data_dir, cfg.sample_rate, cfg.samples,
                                    cfg.crop, ctx.node)
        return {ctx.node.split(".", 1)[1]: wave}, problems


# ------------------------------------------------------------------------------------------ vector


@register_input_data("vector")
class VectorData(InputData):
    """A list column (JSON text in CSV) or ``column_0 … column_{width-1}`` → float32 ``(B, width)``."""

    def columns(self, cfg, available):
        return vector_layout(cfg.column, cfg.width, available)

    def missing(self, cfg, available):
        available = set(available)
        if vector_layout(cfg.column, cfg.width, available) is not None:
            return []
        cols = prefixed(cfg.column, cfg.width)
        have = [c for c in cols if c in available]
        if not have:
            return [(cfg.column, f"; neither is {cols[0]}…{cols[-1]}")]
        lost = [c for c in cols if c not in available]
        return [(cfg.column, f"; of {cols[0]}…{cols[-1]}, {len(lost)} are missing "
                             f"({', '.join(lost[:5])}{', …' if len(lost) > 5 else ''})")]

    def check(self, cfg, df, ctx):
        cols = vector_layout(cfg.column, cfg.width, df.columns)
        return convert.vectors(df, cols, cfg.width, ctx.node)[1] if cols else []

    def transform(self, cfg, state, extra, df, ctx):
        cols = vector_layout(cfg.column, cfg.width, df.columns)
        x, problems = convert.vectors(df, cols, cfg.width, ctx.node)
        return {ctx.node.split(".", 1)[1]: x.astype(np.float32)}, problems
