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
