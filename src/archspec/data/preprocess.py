"""The fitted data transform: DataFrame → ``(inputs, targets)`` tensors, saved with the run as JSON.

Fitted on the training split only (normalisation statistics, category and label vocabularies,
WordPiece vocabularies), saved next to the weights without pickle, and reloaded for evaluate and
predict, so training and serving transform data identically.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import BuildError, CheckpointError, did_you_mean
from ..pipeline import load_spec
from ..registry import REGISTRIES
from . import convert
from .columns import INPUT_TYPES, prediction_targets, vector_layout
from .images import load_images
from .preflight import missing_columns
from .problems import Problem, raise_if
from .text import texts_of

FORMAT = "archspec-preprocessor"
VERSION = 1
STATE_FILE = "preprocessor.json"
TOKENIZER_DIR = "tokenizers"


def _config(cfg) -> dict:
    """The parts of a node's config that decide how data is transformed."""
    return cfg.model_dump(mode="json", exclude={"description"}, by_alias=True)


def _target_config(t) -> dict:
    return {"kind": t.kind, "column": t.column, "size": t.size,
            "declared": list(t.names) if t.names is not None else None, "source": t.source}


class LookupFailed(BuildError, KeyError):
    """Asked for something an input or prediction does not have (a vocabulary of a numeric input, ...).

    A :class:`~archspec.errors.BuildError`, and a ``KeyError`` so that lookups can fall back.
    """

    __str__ = BaseException.__str__  # KeyError would quote the message


class Preprocessor:
    """Turns data rows into the tensors a compiled model reads and its losses compare against.

    Inputs are keyed by input node name: text gives ``name`` (int64 ids ``(B, max_length)``) and
    ``name + ".mask"`` (int64 attention mask); images float32 ``(B, C, H, W)``; numeric float32
    ``(B, n)``; categorical int64 ``(B,)`` (0 = unseen or missing); vectors float32 ``(B, width)``.
    Targets are keyed by prediction name (heads and late fusions): multiclass int64 ``(B,)``;
    multilabel float32 ``(B, L)``; binary (and labelled similarity pairs) float32 ``(B,)``;
    regression float32 ``(B, outputs)``. Contrastive similarity heads have no target.

    Build one with :meth:`fit` (training split only) or :meth:`load` (from a run directory).

    Example:
        >>> import pandas as pd
        >>> spec = ("archspec: 1\\nname: m\\ninputs: {x: {type: numeric, columns: [a]}}\\n"
        ...         "heads: {y: {type: multiclass, from: x, classes: [lo, hi]}}\\n")
        >>> pre = Preprocessor.fit(spec, pd.DataFrame({"a": [1.0, 3.0], "y": ["lo", "hi"]}), ".")
        >>> inputs, targets = pre.transform(pd.DataFrame({"a": [2.0], "y": ["hi"]}), ".")
        >>> inputs["x"].tolist(), targets["y"].tolist(), pre.label_names("y")
        ([[0.0]], [1], ['lo', 'hi'])
    """

    def __init__(self, checked, inputs: dict, targets: dict, text: dict):
        self.checked = checked
        self._inputs = inputs  # name → JSON-able state
        self._targets = targets  # prediction name → JSON-able state
        self._text = text  # text input name → WordPieceText | PretrainedText

    # ------------------------------------------------------------------------------------- fitting

    @classmethod
    def fit(cls, checked, train_df: pd.DataFrame, data_dir=None, *, file=None) -> "Preprocessor":
        """Fit on the training split: statistics, vocabularies, label maps, tokenizers.

        Args:
            checked: the checked spec (a :class:`~archspec.pipeline.Checked`, a path or YAML text).
            train_df: the training rows only (never the validation rows).
            data_dir: the data file's directory (nothing is fitted on images; kept for symmetry
                with :meth:`transform`).
            file: the data file, named in error messages.

        Raises:
            DataError: columns are missing, numeric values are not finite, or more distinct labels
                occur than a head declares.
            BuildError: an input type has no preprocessing, or a pretrained tokenizer is not available.
        """
        checked = load_spec(checked)
        spec = checked.spec
        file = str(file or "<training data>")
        targets_spec = prediction_targets(checked)
        problems = missing_columns(checked, train_df, targets_spec)
        raise_if(problems, file, "train")
        inputs, text = {}, {}
        for name, cfg in spec.inputs.items():
            if cfg.type not in INPUT_TYPES:
                raise BuildError(f"inputs.{name}: no data preprocessing for input type '{cfg.type}' — known: "
                                 f"{', '.join(INPUT_TYPES)}")
            state: dict = {"type": cfg.type, "config": _config(cfg)}
            if cfg.type == "text":
                tok = cfg.tokenizer
                enc = REGISTRIES["tokenizer"].builders[tok.type].fit(
                    tok, texts_of(train_df[cfg.column]), cfg.max_length, checked.base_dir, f"inputs.{name}")
                text[name] = enc
                state.update(tokenizer=enc.kind, vocab_size=enc.vocab_size, pad_id=enc.pad_id)
            elif cfg.type == "numeric":
                x, probs = _numeric(train_df, cfg.columns, name)
                problems += probs
                state.update(_fit_scale(x, cfg.normalize) if not probs else {"shift": [], "scale": []})
            elif cfg.type == "categorical":
                state["vocabulary"] = _fit_vocabulary(train_df[cfg.column], cfg)
            inputs[name] = state
        targets = {}
        for t in targets_spec.values():
            state = _target_config(t)
            if t.kind in ("multiclass", "multilabel"):
                if t.source != t.name and t.source in targets:
                    state["names"] = list(targets[t.source]["names"])  # a late fusion shares its member's classes
                else:
                    series = train_df[t.column]
                    if t.kind == "multiclass":
                        keys, _ = convert.class_keys(series, t.column)
                    else:
                        sets, _ = convert.label_sets(series, t.column, t.separator)
                        keys = [k for s in sets for k in s]
                    field = "classes" if t.kind == "multiclass" else "labels"
                    names, probs = convert.fit_names(keys, t.size, t.names, field, f"heads.{t.source}.{field}",
                                                     t.column)
                    problems += probs
                    state["names"] = names
            targets[t.name] = state
        raise_if(problems, file, "train")
        return cls(checked, inputs, targets, text)

    # ---------------------------------------------------------------------------------- transform

    def transform(self, df: pd.DataFrame, data_dir=None, *, targets: bool = True,
                  file=None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Tensors for every input (and every prediction's target) from ``df``.

        Args:
            df: rows to transform (any split); the index names rows in messages.
            data_dir: directory image paths are relative to (the data file's directory).
            targets: ``False`` for prediction: no label columns are read and the returned
                targets are empty.
            file: the data file, named in error messages.

        Returns:
            ``(inputs, targets)``: dicts of tensors whose first dimension is ``len(df)``.

        Raises:
            DataError: every value that cannot be transformed (missing columns, NaN, unreadable
                images, labels outside the label map, ...).
        """
        file = str(file or "<data>")
        specs = self._target_specs() if targets else {}
        problems = missing_columns(self.checked, df, specs)
        raise_if(problems, file)
        inputs: dict[str, torch.Tensor] = {}
        for name, cfg in self.checked.spec.inputs.items():
            state = self._inputs[name]
            node = f"inputs.{name}"
            if cfg.type == "text":
                ids, mask = self._text[name].encode(texts_of(df[cfg.column]))
                inputs[name] = torch.from_numpy(ids)  # (B, T)
                inputs[name + ".mask"] = torch.from_numpy(mask)  # (B, T), 1 = token, 0 = padding
            elif cfg.type == "image":
                px, probs = load_images(df[cfg.column], cfg.column, data_dir, cfg.size, cfg.channels,
                                        cfg.normalize, node)
                problems += probs
                inputs[name] = torch.from_numpy(px)  # (B, C, H, W)
            elif cfg.type == "numeric":
                x, probs = _numeric(df, cfg.columns, name)
                problems += probs
                x = (x - np.asarray(state["shift"])) / np.asarray(state["scale"])
                inputs[name] = torch.from_numpy(x.astype(np.float32))  # (B, n)
            elif cfg.type == "categorical":
                index = {k: i + 1 for i, k in enumerate(state["vocabulary"])}
                ids = [0 if convert.is_missing(v) else index.get(convert.label_key(v), 0) for v in df[cfg.column]]
                inputs[name] = torch.tensor(ids, dtype=torch.int64).reshape(len(df))  # (B,)
            elif cfg.type == "vector":
                cols = vector_layout(cfg.column, cfg.width, df.columns)
                x, probs = convert.vectors(df, cols, cfg.width, node)
                problems += probs
                inputs[name] = torch.from_numpy(x.astype(np.float32))  # (B, width)
        labels: dict[str, torch.Tensor] = {}
        done: dict = {}
        for name, t in specs.items():
            state = self._targets[name]
            key = (t.column, t.kind, t.size, tuple(state.get("names") or ()))
            if key not in done:
                done[key], probs = self._target(t, state, df)
                problems += probs
            labels[name] = done[key]
        raise_if(problems, file)
        return inputs, labels

    def _target(self, t, state: dict, df: pd.DataFrame):
        series = df[t.column] if t.column in df.columns else None
        where = f"heads.{t.source}.{'classes' if t.kind == 'multiclass' else 'labels'}"
        if t.kind == "multiclass":
            keys, probs = convert.class_keys(series, t.column)
            index = {k: i for i, k in enumerate(state["names"])}
            out = np.zeros(len(df), dtype=np.int64)
            for i, (row, k) in enumerate(zip(series.index, keys)):
                if k is None:
                    continue
                if k in index:
                    out[i] = index[k]
                else:
                    probs.append(convert.unknown_label(k, state["names"], t.names is not None, "class", where,
                                                       row, t.column))
            return torch.from_numpy(out), probs  # (B,)
        if t.kind == "multilabel":
            sets, probs = convert.label_sets(series, t.column, t.separator)
            index = {k: i for i, k in enumerate(state["names"])}
            out = np.zeros((len(df), t.size), dtype=np.float32)
            for i, (row, labels) in enumerate(zip(series.index, sets)):
                for k in labels:
                    if k in index:
                        out[i, index[k]] = 1.0
                    else:
                        probs.append(convert.unknown_label(k, state["names"], t.names is not None, "label",
                                                           where, row, t.column))
            return torch.from_numpy(out), probs  # (B, L)
        if t.kind == "binary":
            y, probs = convert.binary(series, t.column)
            return torch.from_numpy(y.astype(np.float32)), probs  # (B,)
        cols = vector_layout(t.column, t.size, df.columns)
        y, probs = convert.vectors(df, cols, t.size, f"heads.{t.source}", "target")
        return torch.from_numpy(y.astype(np.float32)), probs  # (B, outputs)

    def dataset(self, df: pd.DataFrame, data_dir=None, *, targets: bool = True, file=None):
        """:meth:`transform` wrapped in a :class:`~archspec.data.loader.TensorDictDataset`."""
        from .loader import TensorDictDataset

        return TensorDictDataset(*self.transform(df, data_dir, targets=targets, file=file))

    # ------------------------------------------------------------------------------------- queries

    @property
    def input_names(self) -> list[str]:
        """Input node names, in spec order."""
        return list(self._inputs)

    @property
    def prediction_names(self) -> list[str]:
        """Predictions that have a target (heads and late fusions, contrastive heads excluded)."""
        return list(self._targets)

    def vocab_size(self, input_name: str) -> int:
        """Rows an embedding over this input needs.

        For a text input, the tokenizer's vocabulary (special tokens included; at most the
        WordPiece ``vocab_size``). For a categorical input, the spec's ``cardinality`` (every
        category plus index 0), which does not depend on the data.

        Raises:
            LookupFailed: ``input_name`` is neither a text nor a categorical input.
        """
        state = self._inputs.get(input_name)
        if state is not None and state["type"] == "categorical":
            return self.checked.spec.inputs[input_name].cardinality
        return self._text_encoder(input_name).vocab_size

    def pad_token_id(self, input_name: str) -> int:
        """The id padding positions hold in this text input (0 for WordPiece)."""
        return self._text_encoder(input_name).pad_id

    def vocabulary(self, input_name: str) -> list[str]:
        """Categories of a categorical input; category ``vocabulary[i]`` has index ``i + 1``.

        Raises:
            LookupFailed: ``input_name`` is not a categorical input.
        """
        state = self._inputs.get(input_name)
        if state is None or state["type"] != "categorical":
            raise LookupFailed(f"'{input_name}' is not a categorical input — categorical inputs: "
                             f"{', '.join(n for n, s in self._inputs.items() if s['type'] == 'categorical') or 'none'}")
        return list(state["vocabulary"])

    def label_names(self, prediction: str) -> list[str] | None:
        """Class (multiclass) or label (multilabel) names in output order; ``None`` for other kinds.

        Raises:
            LookupFailed: ``prediction`` has no target.
        """
        state = self._targets.get(prediction)
        if state is None:
            hint = did_you_mean(prediction, self._targets) or f"known: {', '.join(self._targets) or 'none'}"
            raise LookupFailed(f"no prediction with labels named '{prediction}' — {hint}")
        names = state.get("names")
        return list(names) if names is not None else None

    def _text_encoder(self, input_name: str):
        enc = self._text.get(input_name)
        if enc is None:
            raise LookupFailed(f"'{input_name}' is not a text input — text inputs: {', '.join(self._text) or 'none'}")
        return enc

    def _target_specs(self) -> dict:
        return prediction_targets(self.checked)

    # -------------------------------------------------------------------------------- persistence

    def state_dict(self) -> dict:
        """Everything fitted, as JSON-able data (tokenizers live in their own files)."""
        return {"format": FORMAT, "version": VERSION, "spec": self.checked.spec.name,
                "inputs": self._inputs, "targets": self._targets}

    def save(self, directory) -> Path:
        """Write ``preprocessor.json`` and ``tokenizers/<input>/`` into ``directory`` (no pickle).

        Returns:
            the path of ``preprocessor.json``.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for name, enc in self._text.items():
            enc.save(d / TOKENIZER_DIR / name)
        path = d / STATE_FILE
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.state_dict(), fh, indent=1, allow_nan=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, directory, checked) -> "Preprocessor":
        """Reload a saved preprocessor and check that it matches the spec.

        Raises:
            CheckpointError: the files are missing or corrupt, or the spec's inputs or targets
                changed since the preprocessor was fitted.
        """
        checked = load_spec(checked)
        d = Path(directory)
        path = d / STATE_FILE
        try:
            with open(path, encoding="utf-8") as fh:
                state = json.load(fh)
        except FileNotFoundError:
            raise CheckpointError(f"{path}: not found — this run directory has no fitted preprocessor; "
                                  "train first") from None
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: unreadable ({exc}) — the run directory is corrupt; train again") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not an archspec preprocessor file")
        if state.get("version") != VERSION:
            raise CheckpointError(f"{path}: preprocessor format version {state.get('version')!r}, this archspec "
                                  f"reads version {VERSION} — train again with this version")
        spec = checked.spec
        inputs, targets = state.get("inputs") or {}, state.get("targets") or {}
        changed = []
        for name, cfg in spec.inputs.items():
            if name not in inputs:
                changed.append(f"inputs.{name} is new")
            elif inputs[name].get("config") != _config(cfg):
                changed.append(f"inputs.{name} changed")
        changed += [f"inputs.{n} was removed" for n in inputs if n not in spec.inputs]
        specs = prediction_targets(checked)
        for name, t in specs.items():
            saved = targets.get(name)
            if saved is None:
                changed.append(f"'{name}' has a new target")
            elif {k: saved.get(k) for k in _target_config(t)} != _target_config(t):
                changed.append(f"the target of '{name}' changed")
        changed += [f"the target of '{n}' was removed" for n in targets if n not in specs]
        if changed:
            raise CheckpointError(f"{path}: the spec no longer matches the data transform fitted with this run "
                                  f"({'; '.join(changed)}) — use the spec the run was trained with, or train again")
        _validate_state(path, spec, inputs, targets)
        text = {}
        for name, cfg in spec.inputs.items():
            if cfg.type == "text":
                loader = REGISTRIES["tokenizer"].builders.get(inputs[name].get("tokenizer"))
                if loader is None:
                    raise CheckpointError(f"{path}: input '{name}' was fitted with an unknown tokenizer "
                                          f"{inputs[name].get('tokenizer')!r} — is the plugin that provides it installed?")
                text[name] = loader.load(d / TOKENIZER_DIR / name, cfg.max_length)
        return cls(checked, {n: inputs[n] for n in spec.inputs}, {n: targets[n] for n in specs}, text)


def _validate_state(path, spec, inputs: dict, targets: dict) -> None:
    def bad(what):
        raise CheckpointError(f"{path}: {what} — the file was edited or is corrupt; train again")

    for name, cfg in spec.inputs.items():
        s = inputs[name]
        if cfg.type == "numeric":
            for key in ("shift", "scale"):
                v = s.get(key)
                if not (isinstance(v, list) and len(v) == len(cfg.columns)
                        and all(isinstance(x, (int, float)) and np.isfinite(x) for x in v)):
                    bad(f"inputs.{name}.{key} is not {len(cfg.columns)} finite numbers")
            if any(x == 0 for x in s["scale"]):
                bad(f"inputs.{name}.scale holds a zero")
        if cfg.type == "categorical":
            v = s.get("vocabulary")
            if not (isinstance(v, list) and all(isinstance(x, str) for x in v)
                    and len(v) <= cfg.cardinality - 1):
                bad(f"inputs.{name}.vocabulary is not a list of at most {cfg.cardinality - 1} strings")
    for name, s in targets.items():
        if s.get("kind") in ("multiclass", "multilabel"):
            v = s.get("names")
            if not (isinstance(v, list) and len(v) == s.get("size") and all(isinstance(x, str) for x in v)):
                bad(f"the label names of '{name}' are not {s.get('size')} strings")


def _numeric(df: pd.DataFrame, columns, name: str) -> tuple[np.ndarray, list[Problem]]:
    parts, problems = [], []
    for c in columns:
        a, p = convert.numbers(df[c], c, f"inputs.{name} value")
        parts.append(a)
        problems += p
    return np.stack(parts, axis=1), problems  # (n, len(columns)) float64


def _fit_scale(x: np.ndarray, normalize: str) -> dict:
    """``shift``/``scale`` per column so that ``(x - shift) / scale`` is normalised; a constant column gets scale 1."""
    if normalize == "standard":
        shift, scale = x.mean(axis=0), x.std(axis=0)
    elif normalize == "minmax":
        shift, scale = x.min(axis=0), x.max(axis=0) - x.min(axis=0)
    else:
        shift, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
    scale = np.where((scale > 0) & np.isfinite(scale), scale, 1.0)
    return {"shift": [float(v) for v in shift], "scale": [float(v) for v in scale]}


def _fit_vocabulary(series: pd.Series, cfg) -> list[str]:
    """Declared categories, or the most frequent training values (ties alphabetically), capped."""
    if cfg.categories is not None:
        return [str(c) for c in cfg.categories]
    counts = Counter(convert.label_key(v) for v in series if not convert.is_missing(v))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [k for k, _ in ranked[: cfg.max_categories]]
