"""The fitted data transform: rows → ``(inputs, targets)`` arrays, saved with the run as JSON.

Fitted in one streaming pass over the training split only (normalisation statistics with running
sums, category counts, WordPiece vocabularies, label maps; no image is decoded), saved next to the
weights without pickle, and reloaded for evaluate and predict, so training and serving transform
data identically. What each input type fits and how it transforms lives in its home in
:mod:`.inputs`; this module runs them and handles the targets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import BuildError, CheckpointError, did_you_mean
from ..pipeline import load_spec
from . import convert
from .columns import prediction_targets, vector_layout
from .inputs import TOKENIZER_DIR, Context, input_data
from .preflight import missing_columns
from .problems import Problem, raise_if

FORMAT = "archspec-preprocessor"
VERSION = 1
STATE_FILE = "preprocessor.json"


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

    def __init__(self, checked, inputs: dict, targets: dict, extras: dict):
        self.checked = checked
        self._inputs = inputs  # name → JSON-able state
        self._targets = targets  # prediction name → JSON-able state
        self._extras = extras  # input name → what its state cannot hold in JSON (a tokenizer)

    # ------------------------------------------------------------------------------------- fitting

    @classmethod
    def fit(cls, checked, train, data_dir=None, *, file=None, label_rows=None, columns=None) -> "Preprocessor":
        """Fit on the training split in one streaming pass: statistics, vocabularies, label maps, tokenizers.

        Args:
            checked: the checked spec (a :class:`~archspec.pipeline.Checked`, a path or YAML text).
            train: the training rows only (never the validation rows): a DataFrame, or an iterable
                of DataFrames (chunks, index = file row) read once, in order.
            data_dir: the data file's directory (nothing is fitted on images; kept for symmetry
                with :meth:`transform`).
            file: the data file, named in error messages.
            label_rows: chunks to fit the label maps on instead of ``train`` (all training rows
                when ``train`` is a ``training.fit_rows`` sample: a class missing from the sample
                would otherwise be unknown at training time). Only the target columns are read.
            columns: the file's columns, when the chunks hold only those the fit reads.

        Raises:
            DataError: columns are missing, or more distinct labels occur than a head declares.
            BuildError: an input type has no preprocessing, or a pretrained tokenizer is not available.
        """
        checked = load_spec(checked)
        spec = checked.spec
        file = str(file or "<training data>")
        targets_spec = prediction_targets(checked)
        chunks = [train] if isinstance(train, pd.DataFrame) else train
        homes = {name: input_data(cfg.type) for name, cfg in spec.inputs.items()}
        fitters = {name: homes[name].fitter(cfg, Context(f"inputs.{name}", data_dir, checked.base_dir))
                   for name, cfg in spec.inputs.items()}
        labels = _LabelFit(targets_spec)
        problems: list[Problem] = []
        if columns is not None:
            raise_if(missing_columns(checked, pd.DataFrame(columns=list(columns)), targets_spec), file, "train")
        first = True
        for df in chunks:
            if first and columns is None:
                raise_if(missing_columns(checked, df, targets_spec if label_rows is None else {}), file, "train")
            first = False
            for f in fitters.values():
                if f.columns is not None:
                    f.update(df)
            if label_rows is None:
                labels.update(df)
        if first:
            raise_if([Problem("too-few-rows", "the data has no rows", "add rows")], file, "train")
        if label_rows is not None:
            for i, df in enumerate(label_rows):
                if i == 0 and columns is None:
                    raise_if(missing_columns(checked, df, targets_spec, inputs=False), file, "train")
                labels.update(df)
        inputs, extras = {}, {}
        for name, cfg in spec.inputs.items():
            state, extra, probs = fitters[name].finish()
            problems += probs
            inputs[name] = {"type": cfg.type, "config": _config(cfg), **state}
            if extra is not None:
                extras[name] = extra
        targets, probs = labels.finish()
        raise_if(problems + probs, file, "train")
        return cls(checked, inputs, targets, extras)

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
        raise_if(missing_columns(self.checked, df, self._target_specs() if targets else {}), file)
        inputs, labels, problems = self.arrays(df, data_dir, targets=targets)
        raise_if(problems, file)
        return ({k: torch.from_numpy(v) for k, v in inputs.items()},
                {k: torch.from_numpy(v) for k, v in labels.items()})

    def arrays(self, df: pd.DataFrame, data_dir=None, *, targets: bool = True,
               inputs=None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[Problem]]:
        """Like :meth:`transform`, but numpy arrays and the problems instead of an error (the data
        loader drops or reports the problem rows). ``inputs`` limits which inputs are transformed."""
        spec = self.checked.spec
        out: dict[str, np.ndarray] = {}
        problems: list[Problem] = []
        for name, cfg in spec.inputs.items():
            if inputs is not None and name not in inputs:
                continue
            arrays, probs = input_data(cfg.type).transform(cfg, self._inputs[name], self._extras.get(name), df,
                                                           Context(f"inputs.{name}", data_dir, self.checked.base_dir))
            out.update(arrays)
            problems += probs
        labels: dict[str, np.ndarray] = {}
        done: dict = {}
        for name, t in (self._target_specs() if targets else {}).items():
            state = self._targets[name]
            key = (t.column, t.kind, t.size, tuple(state.get("names") or ()))
            if key not in done:
                done[key], probs = self._target(t, state, df)
                problems += probs
            labels[name] = done[key]
        return out, labels, problems

    def columns(self, available, *, targets: bool = True, inputs=None) -> list[str]:
        """The data columns a transform reads from a file with ``available`` columns."""
        cols: list[str] = []
        for name, cfg in self.checked.spec.inputs.items():
            if inputs is None or name in inputs:
                cols += input_data(cfg.type).columns(cfg, available) or []
        for t in (self._target_specs() if targets else {}).values():
            cols += (vector_layout(t.column, t.size, available) or []) if t.kind == "regression" else [t.column]
        return list(dict.fromkeys(c for c in cols if c in set(available)))

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
            return out, probs  # (B,)
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
            return out, probs  # (B, L)
        if t.kind == "binary":
            y, probs = convert.binary(series, t.column)
            return y.astype(np.float32), probs  # (B,)
        cols = vector_layout(t.column, t.size, df.columns)
        y, probs = convert.vectors(df, cols, t.size, f"heads.{t.source}", "target")
        return y.astype(np.float32), probs  # (B, outputs)

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
        enc = self._extras.get(input_name) if self._inputs.get(input_name, {}).get("type") == "text" else None
        if enc is None:
            texts = [n for n, s in self._inputs.items() if s["type"] == "text"]
            raise LookupFailed(f"'{input_name}' is not a text input — text inputs: {', '.join(texts) or 'none'}")
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
        for name, extra in self._extras.items():
            input_data(self._inputs[name]["type"]).save_extra(extra, d / TOKENIZER_DIR / name)
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
        extras = {}
        for name, cfg in spec.inputs.items():
            extra = input_data(cfg.type).load_extra(cfg, inputs[name], d / TOKENIZER_DIR / name)
            if extra is not None:
                extras[name] = extra
        return cls(checked, {n: inputs[n] for n in spec.inputs}, {n: targets[n] for n in specs}, extras)


def _validate_state(path, spec, inputs: dict, targets: dict) -> None:
    def bad(what):
        raise CheckpointError(f"{path}: {what} — the file was edited or is corrupt; train again")

    for name, cfg in spec.inputs.items():
        why = input_data(cfg.type).validate(cfg, inputs[name])
        if why:
            bad(f"inputs.{name}.{why}")
    for name, s in targets.items():
        if s.get("kind") in ("multiclass", "multilabel"):
            v = s.get("names")
            if not (isinstance(v, list) and len(v) == s.get("size") and all(isinstance(x, str) for x in v)):
                bad(f"the label names of '{name}' are not {s.get('size')} strings")


class _LabelFit:
    """Label maps fitted in a stream: the distinct keys of each multiclass/multilabel prediction."""

    def __init__(self, specs: dict):
        self.specs = specs
        self.keys: dict = {name: set() for name, t in specs.items()
                           if t.kind in ("multiclass", "multilabel") and t.names is None}

    def update(self, df: pd.DataFrame) -> None:
        for name, keys in self.keys.items():
            t = self.specs[name]
            if t.column not in df.columns:
                continue
            if t.kind == "multiclass":
                keys.update(k for k in convert.class_keys(df[t.column], t.column)[0] if k is not None)
            else:
                keys.update(k for s in convert.label_sets(df[t.column], t.column, t.separator)[0] for k in s)

    def finish(self) -> tuple[dict, list[Problem]]:
        targets, problems = {}, []
        for t in self.specs.values():
            state = _target_config(t)
            if t.kind in ("multiclass", "multilabel"):
                if t.source != t.name and t.source in targets:
                    state["names"] = list(targets[t.source]["names"])  # a late fusion shares its member's classes
                else:
                    field = "classes" if t.kind == "multiclass" else "labels"
                    names, probs = convert.fit_names(sorted(self.keys.get(t.name, ())), t.size, t.names, field,
                                                     f"heads.{t.source}.{field}", t.column)
                    problems += probs
                    state["names"] = names
            targets[t.name] = state
        return targets, problems


def fit_table(checked, table, rows=None, *, fit_rows: int | None = None, seed: int = 0,
              chunk_rows: int = 8192) -> Preprocessor:
    """:meth:`Preprocessor.fit` on a :class:`~.store.Table`'s training rows, streamed in chunks.

    Only the columns the spec reads are taken, no image is opened, and memory holds one chunk.

    Args:
        checked: the checked spec.
        table: the training data file (:func:`~.store.open_table`).
        rows: the training split's positions (default: every row).
        fit_rows: ``training.fit_rows``: fit the inputs on a seeded sample of this many rows
            (the same sample for the same ``seed``); label maps still read every training row.
        seed: ``training.seed``.
        chunk_rows: rows per chunk.
    """
    from .tables import permutation

    checked = load_spec(checked)
    rows = np.arange(table.num_rows) if rows is None else np.asarray(rows)
    specs = prediction_targets(checked)
    cols = []
    for cfg in checked.spec.inputs.values():  # e.g. nothing is fitted on images: not even their paths are read
        cols += input_data(cfg.type).fit_columns(cfg, table.columns)
    label_cols = [c for t in specs.values() for c in ((vector_layout(t.column, t.size, table.columns) or [])
                                                      if t.kind == "regression" else [t.column])]
    label_cols = [c for c in dict.fromkeys(label_cols) if c in set(table.columns)]
    fit_on, label_rows = rows, None
    if fit_rows is not None and fit_rows < len(rows):
        fit_on = np.sort(rows[permutation(len(rows), seed, 0xF17)[:fit_rows]])
        label_rows = table.chunks(rows, label_cols, chunk_rows)
    else:
        cols += label_cols
    cols = list(dict.fromkeys(cols))
    return Preprocessor.fit(checked, table.chunks(fit_on, cols, chunk_rows), Path(str(table.source)).resolve().parent,
                            file=str(table.source), label_rows=label_rows, columns=table.columns)
