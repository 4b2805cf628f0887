"""Every shipped spec runs through the data layer on synthetic data from tests/datagen.py."""

import doctest
import importlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from archspec.data import Loader, Preprocessor, open_table, preflight, read_table, split
from archspec.graph import prediction_kind
from archspec.pipeline import check_file

from datagen import make_dataset


def test_shipped_spec_preprocesses(spec_path, tmp_path):
    checked = check_file(spec_path)
    path = make_dataset(checked, 12, tmp_path)
    df = read_table(path)
    t = checked.spec.training
    preflight(checked, df, path, "train")
    train, val = split(df, t.validation_split, t.seed)
    pre = Preprocessor.fit(checked, train, path.parent, file=path)
    preflight(checked, val, path, "validation", preprocessor=pre)
    inputs, targets = pre.transform(val, path.parent, file=path)
    for name, cfg in checked.spec.inputs.items():
        shape = checked.shapes[name]
        assert tuple(inputs[name].shape) == (len(val), *shape.dims), name
        assert str(inputs[name].dtype) == f"torch.{shape.dtype}", name
        if cfg.type == "text":
            assert inputs[name + ".mask"].shape == inputs[name].shape
            assert int(inputs[name].max()) < pre.vocab_size(name)
    assert set(targets) == set(pre.prediction_names)
    for name, y in targets.items():
        kind = prediction_kind(checked.graph, name)  # a gbdt head has the kind of its task
        logits = checked.shapes[name]
        if kind == "multiclass":
            assert y.dtype == torch.int64 and y.shape == (len(val),)
            assert int(y.max()) < logits.dims[0]
        elif kind in ("multilabel", "regression"):
            assert y.dtype == torch.float32 and tuple(y.shape) == (len(val), *logits.dims)
        else:
            assert y.dtype == torch.float32 and y.shape == (len(val),)
    # the streaming path gives the same tensors as the in-memory transform
    table = open_table(path)
    positions = np.flatnonzero(np.isin(np.arange(table.num_rows), val.index.to_numpy()))
    x, y, r = next(iter(Loader(table, pre, positions, batch_size=len(val), seed=t.seed)))
    assert r.tolist() == val.index.tolist() and x.keys() == inputs.keys() and y.keys() == targets.keys()
    for k in inputs:
        assert torch.equal(x[k], inputs[k]), k
    for k in targets:
        assert torch.equal(y[k], targets[k]), k


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_datagen_formats(fmt, tmp_path):
    from conftest import ROOT

    checked = check_file(ROOT / "specs" / "hybrid_fusion.yaml")  # image + vector + text + late fusion
    path = make_dataset(checked, 6, tmp_path, fmt=fmt)
    df = read_table(path)
    preflight(checked, df, path)
    inputs, _ = Preprocessor.fit(checked, df, path.parent).transform(df, path.parent)
    assert inputs["pixels8"].shape == (6, 64) and inputs["image"].shape == (6, 1, 28, 28)


MODULES = ["problems", "tables", "columns", "convert", "preflight", "text", "preprocess", "stream", "store", "inputs",
           "writers"]


@pytest.mark.parametrize("mod", MODULES)
def test_docstring_examples_run(mod):
    result = doctest.testmod(importlib.import_module(f"archspec.data.{mod}"), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_data_checks_do_not_import_torch():
    code = ("import sys, archspec.data as d; d.read_table; d.preflight; d.split; d.open_table; d.preflight_table; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
