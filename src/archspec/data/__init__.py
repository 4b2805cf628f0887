"""The data layer: read data files lazily, check them against a spec, fit and apply the data
transform, and batch it in worker processes — one path for train, evaluate, predict and baselines.

| module | job | torch |
|---|---|---|
| ``store`` | a data file → a memory-mapped Arrow :class:`Table` (converted once, cached by content hash) | no |
| ``tables`` | small-file reading (:func:`read_table`), deterministic splits and permutations | no |
| ``inputs`` | **one home per input type**: columns, pre-flight check, streaming fit, state, transform | no |
| ``convert`` | cell values → numpy arrays, and a located :class:`Problem` for every value that is unusable | no |
| ``preflight`` | every problem of a file before the first step (:func:`preflight_table` streams) | no |
| ``preprocess`` | :class:`Preprocessor`: the fitted transform (inputs via their homes, plus targets), saved as JSON | yes |
| ``stream`` | :class:`Loader`: sampler → worker processes → batches; the only batching path | yes |
| ``writers`` | prediction files written batch by batch | no |

What ``archspec train`` does::

    table = open_table(train_file)                         # memory-mapped, nothing read yet
    train_rows, val_rows = split_positions(table.num_rows, t.validation_split, t.seed)
    preflight_table(checked, table, train_rows, "train")   # streams; every problem, located
    pre = fit_table(checked, table, train_rows)            # one pass, no image opened
    pre.save(run_dir / "preprocess")                       # resume/evaluate/predict: Preprocessor.load
    loader = Loader(table, pre, train_rows, batch_size=t.batch_size, shuffle=True, seed=t.seed,
                    num_workers=default_workers(checked))
    for epoch in range(epochs):
        for inputs, targets, rows in loader.epoch(epoch):  # dicts of tensors, and the file rows
            ...

Never refit on resume: the saved preprocessing is what the weights were trained against.

How to add an input type (say ``audio``)
----------------------------------------

1. **The config** (torch-free): a class in ``spec/inputs.py`` registered with
   ``@register_config("input", "audio")``, with its fields (``column``, ``sample_rate``,
   ``seconds``, ...) as attribute docstrings and an ``infer()`` that states the tensor it gives,
   e.g. ``Shape(SIGNAL, (n_samples,), "float32")``; add it to the ``InputConfig`` union there.
2. **The data home** (torch-free): a class in ``data/inputs.py`` registered with
   ``@register_input_data("audio")``. Override what differs from a one-column input:
   ``check`` (the pre-flight: a cheap header read with ``soundfile.info``, located problems),
   ``fitter`` (only if something is fitted, e.g. feature statistics: a :class:`~.inputs.Fitter`
   with ``update(chunk)``/``finish()``), ``transform`` (decode and resample one batch → numpy
   arrays keyed by the model's input keys; it runs in the loader's worker processes) and
   ``validate``/``save_extra``/``load_extra`` if its state is more than JSON. Nothing else in
   ``data/`` changes: pre-flight, fitting, saving, loading and batching ask the home.
3. **An encoder that reads it** (if none does yet): its config in ``spec/encoders.py`` and its
   builder in ``nn/encoders.py`` (GUIDE §1: two files per encoder).
4. **Tests and docs**: a case in ``tests/datagen.py`` so every test that generates data covers it,
   and the regenerated schema and ``docs/spec.md``.
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
