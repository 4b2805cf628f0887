"""The data layer: read tables, check them against a spec, fit and apply the data transform, batch.

``read_table``, ``split`` and ``preflight`` are torch-free; ``Preprocessor`` and ``make_loader``
import torch on first use (attribute access is lazy), so a data check stays light.

Typical use (what ``archspec train`` does)::

    df = read_table(train_file)
    preflight(checked, df, train_file, "train")           # every problem of the file at once
    train_df, val_df = split(df, t.validation_split, t.seed, file=train_file)
    pre = Preprocessor.fit(checked, train_df, data_dir, file=train_file)  # training rows only
    pre.save(run_dir / "preprocessor")                    # resume/evaluate/predict: Preprocessor.load
    inputs, targets = pre.transform(train_df, data_dir, file=train_file)
    for epoch in range(epochs):
        for batch_inputs, batch_targets in make_loader(inputs, targets, t.batch_size, True, t.seed, epoch):
            ...

Never refit on resume: WordPiece training in ``tokenizers`` is not deterministic (tie-breaking
follows hash-map order, huggingface/tokenizers#1794), so only the saved tokenizer reproduces the ids.
"""

from __future__ import annotations

from .columns import TargetSpec, prediction_targets
from .preflight import find_problems, preflight
from .problems import Problem, data_error
from .tables import permutation, read_table, split, split_frame, split_sizes

from .inputs import INPUT_DATA, InputData, input_data, register_input_data
from .store import Table, cache_dir, clear_cache, open_table
from .preflight import preflight_table
from .tables import split_positions

_LAZY = {
    "Preprocessor": ".preprocess",
    "LookupFailed": ".preprocess",
    "fit_table": ".preprocess",
    "Loader": ".stream",
    "EpochBatchSampler": ".stream",
    "RowDataset": ".stream",
    "BatchKey": ".stream",
    "batches_per_epoch": ".stream",
    "default_workers": ".stream",
}

__all__ = ["BatchKey", "EpochBatchSampler", "INPUT_DATA", "InputData", "Loader", "LookupFailed", "Preprocessor",
           "Problem", "RowDataset", "Table", "TargetSpec", "batches_per_epoch", "cache_dir", "clear_cache",
           "data_error", "default_workers", "find_problems", "fit_table", "input_data", "open_table",
           "permutation", "prediction_targets", "preflight", "preflight_table", "read_table",
           "register_input_data", "split", "split_frame", "split_positions", "split_sizes"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
