"""Gradient-boosted heads (`type: gbdt`): fitting with LightGBM, and the text model files of a run.

A run keeps each head's boosters as LightGBM text models (``save_model``, never pickle) in
``<run>/gbdt/<head>.txt`` (one booster: multiclass, binary) or ``<head>.<j>.txt`` (one per label or
output). :func:`fit_heads` fits them on the training split's tabular inputs, with early stopping on
the validation split, before the neural part trains; :func:`load_heads` puts them back into a
compiled model (resume, evaluate, predict).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import BuildError, CheckpointError

GBDT_DIR = "gbdt"


def gbdt_heads(model) -> list[str]:
    """Names of the model's gradient-boosted heads, in graph order."""
    return [n for n in model.predictions if getattr(model.node_configs[n], "type", None) == "gbdt"]


def _lightgbm():
    try:
        import lightgbm
    except ImportError:
        raise BuildError("a `type: gbdt` head needs LightGBM: pip install 'archspec[gbdt]' "
                         "(or pip install lightgbm)") from None
    return lightgbm


def model_files(run_dir, name: str, cfg) -> list[Path]:
    """The text model files of one head in a run directory."""
    d = Path(run_dir) / GBDT_DIR
    n = cfg.models() if cfg.task in ("multilabel", "regression") else 1
    return [d / f"{name}.txt"] if cfg.task in ("multiclass", "binary") else [d / f"{name}.{j}.txt" for j in range(n)]


def _collect(batches, names: list[str], inputs: list[str]):
    xs: dict = {k: [] for k in inputs}
    ys: dict = {k: [] for k in names}
    for inp, tgt, rows in batches:
        if not len(rows):
            continue
        for k in inputs:
            xs[k].append(inp[k])
        for k in names:
            ys[k].append(tgt[k])
    import torch

    return ({k: torch.cat(v) for k, v in xs.items() if v}, {k: torch.cat(v).numpy() for k, v in ys.items() if v})


def _params(cfg, objective: str, seed: int, **extra) -> dict:
    return {"objective": objective, "num_leaves": cfg.num_leaves, "max_depth": cfg.max_depth or -1,
            "learning_rate": cfg.learning_rate, "min_child_samples": cfg.min_child_samples,
            "seed": cfg.seed if cfg.seed is not None else seed, "deterministic": True, "force_row_wise": True,
            "num_threads": 1, "verbose": -1, **extra}


def fit_heads(model, train_batches, val_batches, run_dir, seed: int, log=print) -> None:
    """Fit every gbdt head of ``model`` and save its boosters in ``run_dir/gbdt``.

    Args:
        train_batches / val_batches: loaders over the training and validation splits (in file order),
            built with the heads' inputs and targets; ``val_batches`` may be ``None``.
    """
    lgb = _lightgbm()
    names = gbdt_heads(model)
    inputs = sorted({i for n in names for i in model.node_configs[n].inputs})
    x_tr, y_tr = _collect(train_batches, names, inputs)
    x_va, y_va = _collect(val_batches, names, inputs) if val_batches is not None else ({}, {})
    for name in names:
        cfg, module = model.node_configs[name], model.node_module(name)
        ftr = module.features(*[x_tr[i] for i in cfg.inputs])
        fva = module.features(*[x_va[i] for i in cfg.inputs]) if name in y_va else None
        ytr, yva = y_tr[name], y_va.get(name)
        if cfg.task == "multiclass":
            jobs = [(_params(cfg, "multiclass", seed, num_class=module.outputs), ytr, yva)]
        elif cfg.task == "binary":
            jobs = [(_params(cfg, "binary", seed), ytr, yva)]
        else:
            obj = "binary" if cfg.task == "multilabel" else ("huber" if cfg.loss.type == "huber" else "regression")
            extra = {"alpha": cfg.loss.delta} if obj == "huber" else {}
            jobs = [(_params(cfg, obj, seed, **extra), np.ascontiguousarray(ytr[:, j]),
                     None if yva is None else np.ascontiguousarray(yva[:, j]))
                    for j in range(ytr.shape[1])]
        boosters = []
        for (params, y, yv), path in zip(jobs, model_files(run_dir, name, cfg)):
            dtrain = lgb.Dataset(ftr, label=y, categorical_feature=module.categorical_features or "auto",
                                 free_raw_data=False, params={"verbose": -1})
            valid, callbacks = [], []
            if fva is not None and len(fva):
                valid = [lgb.Dataset(fva, label=yv, reference=dtrain)]
                if cfg.early_stopping:
                    callbacks.append(lgb.early_stopping(cfg.early_stopping, verbose=False))
            booster = lgb.train(params, dtrain, num_boost_round=cfg.trees, valid_sets=valid, callbacks=callbacks)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            booster.save_model(str(tmp), num_iteration=booster.best_iteration or None)
            tmp.replace(path)
            boosters.append(lgb.Booster(model_file=str(path)))  # exactly what the run keeps
        module.set_boosters(boosters)
        log(f"gbdt head {name}: {module.trees()} trees ({cfg.task}, {len(ftr)} training rows"
            + (f", early stopping on {len(fva)} validation rows" if fva is not None and cfg.early_stopping else "")
            + f") → {Path(run_dir) / GBDT_DIR}")


def has_fitted(model, run_dir) -> bool:
    """Every gbdt head of ``model`` has its model files in ``run_dir``."""
    return all(p.is_file() for n in gbdt_heads(model) for p in model_files(run_dir, n, model.node_configs[n]))


def load_heads(model, run_dir) -> None:
    """Load the boosters of every gbdt head from ``run_dir`` (no-op without gbdt heads)."""
    names = gbdt_heads(model)
    if not names:
        return
    lgb = _lightgbm()
    for name in names:
        cfg = model.node_configs[name]
        boosters = []
        for path in model_files(run_dir, name, cfg):
            if not path.is_file():
                raise CheckpointError(f"{run_dir}: the gbdt head '{name}' has no model file {path.name} in "
                                      f"{GBDT_DIR}/ — the run was stopped before its trees were fitted; "
                                      "train it again")
            try:
                boosters.append(lgb.Booster(model_file=str(path)))
            except lgb.basic.LightGBMError as exc:
                raise CheckpointError(f"{path}: not a readable LightGBM model ({exc})") from None
        module = model.node_module(name)
        for b in boosters:
            if b.num_feature() != sum(module.widths):
                raise CheckpointError(f"{path}: the trees read {b.num_feature()} features, but head '{name}' "
                                      f"gives {sum(module.widths)} — the model file belongs to another spec")
        module.set_boosters(boosters)


def fit_or_load_heads(model, run_dir, resuming: bool, table, val_table, pre, train_rows, val_rows, tcfg,
                      loader_args: dict, log=print) -> None:
    """The training hook: fit the gbdt heads on the training split (or, when resuming a run that
    already fitted them, load its model files: the trees are never refitted)."""
    names = gbdt_heads(model)
    if not names:
        return
    if resuming and has_fitted(model, run_dir):
        load_heads(model, run_dir)
        log(f"gbdt heads {', '.join(names)}: trees loaded from {Path(run_dir) / GBDT_DIR}")
        return
    from .data import Loader

    inputs = sorted({i for n in names for i in model.node_configs[n].inputs})
    args = {**loader_args, "num_workers": 0, "pin_memory": False}
    train = Loader(table, pre, train_rows, batch_size=4096, rank=0, world_size=1, inputs=inputs, name="train", **args)
    val = Loader(val_table, pre, val_rows, batch_size=4096, rank=0, world_size=1, inputs=inputs,
                 name="validation", **args) if len(val_rows) else None
    fit_heads(model, train, val, run_dir, tcfg.seed, log)


# ------------------------------------------------------------------------------------------- ONNX

ONNX_SCORES = "scores"
ONNX_FEATURES = "features"


def _onnxmltools():
    try:
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType
        from onnxmltools.convert.lightgbm._parse import WrappedBooster
    except ImportError:
        raise BuildError("exporting a `type: gbdt` head to ONNX needs onnxmltools (LightGBM's converter): "
                         "pip install 'archspec[gbdt]' (or pip install onnxmltools)") from None
    return onnxmltools, FloatTensorType, WrappedBooster


def _floor32(tree: dict) -> None:
    """Replace every numerical split threshold ``t`` by the largest float32 ``<= t``, in place.

    ONNX tree ensembles compare float32 features with float32 thresholds, LightGBM compares with
    doubles. Features here are float32 values (the run's preprocessing makes them so), and for a
    float32 ``x``, ``x <= t`` holds exactly when ``x <= floor32(t)``; rounding ``t`` to the nearest
    float32 instead (what the converter would do) sends an ``x`` equal to a rounded-up threshold the
    wrong way."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if "split_index" not in node:
            continue
        if node.get("decision_type") == "<=" and not isinstance(node.get("threshold"), str):
            t = float(node["threshold"])
            t32 = np.float32(t)
            if np.isfinite(t32) and float(t32) > t:
                t32 = np.nextafter(t32, np.float32(-np.inf))
            node["threshold"] = float(t32)
        stack += [node["left_child"], node["right_child"]]


class _Float32Splits:
    """A booster as onnxmltools reads it (its mock protocol: ``is_mock`` + ``dump_model()``), with
    thresholds made exact for float32 features (:func:`_floor32`)."""

    is_mock = True

    def __init__(self, booster):
        self._booster = booster

    def dump_model(self, *args, **kwargs):
        dump = self._booster.dump_model(*args, **kwargs)
        for tree in dump.get("tree_info", []):
            _floor32(tree["tree_structure"])
        return dump

    def __getattr__(self, item):
        return getattr(self._booster, item)


def _convert(booster, n_features: int):
    """One booster as an ONNX model: ``features`` (B, F) float32 → its raw scores (see :func:`to_onnx`)."""
    onnxmltools, FloatTensorType, WrappedBooster = _onnxmltools()
    wrapped = WrappedBooster(booster)
    wrapped.booster_ = _Float32Splits(booster)
    proto = onnxmltools.convert_lightgbm(wrapped, initial_types=[(ONNX_FEATURES, FloatTensorType([None, n_features]))],
                                         zipmap=False, target_opset=15)
    for node in proto.graph.node:  # raw scores (logits), as the torch head returns them
        for a in node.attribute:
            if a.name == "post_transform":
                a.s = b"NONE"
    return proto


def to_onnx(module, name: str):
    """A fitted gbdt head as one ONNX model (ai.onnx.ml tree ensembles, converted by onnxmltools).

    Input ``features``: ``(B, F)`` float32, the head's inputs after the run's preprocessing,
    concatenated in the head's `inputs` order (as :meth:`GBDTHead.features` builds them). Output
    ``scores``: the trees' raw scores, exactly what the torch head returns: ``(B, C)`` logits
    (multiclass), ``(B,)`` logit (binary), ``(B, L)`` logits (multilabel, one booster per label),
    ``(B, D)`` values (regression, one booster per value).

    Raises:
        BuildError: the head has no fitted trees, or onnxmltools is missing.
    """
    import onnx
    from onnx import TensorProto, compose, helper

    if not module.boosters:
        raise BuildError(f"heads.{name} (gbdt) has no fitted trees — export a trained run, not a spec")
    n_features = sum(module.widths)
    nodes, inits, parts = [], [], []
    col1 = helper.make_tensor("archspec_col1", TensorProto.INT64, [1], [1])
    if module.task in ("binary", "multilabel"):
        inits.append(col1)
    for j, booster in enumerate(module.boosters):
        part = compose.add_prefix(_convert(booster, n_features), f"b{j}_")
        g = part.graph
        nodes.append(helper.make_node("Identity", [ONNX_FEATURES], [g.input[0].name]))
        nodes += list(g.node)
        inits += list(g.initializer)
        outs = {o.name[len(f"b{j}_"):]: o.name for o in g.output}
        if "probabilities" in outs and module.task != "multiclass":  # (B, 2): [-s, s] without the sigmoid
            raw = f"b{j}_raw"
            nodes.append(helper.make_node("Gather", [outs["probabilities"], col1.name], [raw], axis=1))
        else:
            raw = outs.get("probabilities") or outs["variable"]  # (B, C) or (B, 1)
        parts.append(raw)
    if module.task == "binary":
        shape = helper.make_tensor("archspec_flat", TensorProto.INT64, [1], [-1])
        inits.append(shape)
        nodes.append(helper.make_node("Reshape", [parts[0], shape.name], [ONNX_SCORES]))
        dims = [None]
    elif module.task == "multiclass":
        nodes.append(helper.make_node("Identity", [parts[0]], [ONNX_SCORES]))
        dims = [None, module.outputs]
    else:
        nodes.append(helper.make_node("Concat", parts, [ONNX_SCORES], axis=1))
        dims = [None, len(parts)]
    graph = helper.make_graph(
        nodes, f"{name}_gbdt", [helper.make_tensor_value_info(ONNX_FEATURES, TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info(ONNX_SCORES, TensorProto.FLOAT, dims)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("ai.onnx.ml", 1)],
                              producer_name="archspec (onnxmltools LightGBM converter)")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def onnx_features(module, xs: list) -> np.ndarray:
    """The ``features`` input of :func:`to_onnx` for a batch of preprocessed input tensors (float32)."""
    return module.features(*xs).astype(np.float32)
