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

_LAZY = {
    "Preprocessor": ".preprocess",
    "LookupFailed": ".preprocess",
    "TensorDictDataset": ".loader",
    "EpochBatchSampler": ".loader",
    "make_loader": ".loader",
    "batches_per_epoch": ".loader",
}

__all__ = ["EpochBatchSampler", "LookupFailed", "Preprocessor", "Problem", "TargetSpec", "TensorDictDataset", "batches_per_epoch",
           "data_error", "find_problems", "make_loader", "permutation", "prediction_targets", "preflight",
           "read_table", "split", "split_frame", "split_sizes"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
