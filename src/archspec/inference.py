"""Evaluate and predict with a trained run: its own spec, preprocessing and best weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import checkpoint as ckpt
from .build import compile_loss, compile_spec
from .graph import prediction_kind
from .errors import CheckpointError, DataError
from .pipeline import check_text
from .outputs import evaluate_outputs, label_names, run_model, to_probabilities


def load_run(run_dir, which: str = "best"):
    """``(model, preprocessor, checked)`` of a run, with the ``best`` (else ``last``) weights."""
    from .data import Preprocessor
    from .train import RunPaths, _stored_base

    run = RunPaths(Path(run_dir))
    if not run.spec.is_file() or not run.checkpoints.is_dir():
        raise CheckpointError(f"{run_dir} is not a trained run directory (no spec.yaml / checkpoints/)")
    checked = check_text(run.spec.read_text(), str(run.spec), base_dir=_stored_base(run)).raise_for_errors()
    pre = Preprocessor.load(run.preprocess, checked)
    model = compile_spec(checked, preprocessor=pre)
    name = which if ckpt.read_pointer(run.checkpoints, which, missing_ok=True) else "last"
    try:
        model.load_state_dict(ckpt.load_weights(run.checkpoints, name))
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint '{name}' of {run_dir} does not fit its spec: "
                              f"{str(exc).splitlines()[0]}") from None
    model.eval()
    return model, pre, checked


def _load_data(checked, pre, data_file, *, need_targets: bool):
    from .data import preflight, read_table

    path = Path(data_file)
    if not path.is_file():
        raise DataError(f"data file not found: {data_file}")
    df = read_table(path)
    preflight(checked, df, str(path), "evaluate" if need_targets else "predict", data_dir=path.resolve().parent,
              targets=need_targets)
    x, y = pre.transform(df, path.resolve().parent, targets=need_targets)
    return df, x, y


def evaluate(run_dir, data_file, batch_size: int = 256, baseline: bool = False):
    """Metrics of a trained run on a labelled file, keyed ``HEAD/METRIC`` (plus losses).

    With ``baseline=True`` returns ``(metrics, baseline_metrics)``: the trivial baselines of
    :mod:`archspec.baselines` (fitted on the run's training split) on the same file.
    """
    model, pre, checked = load_run(run_dir)
    _, x, y = _load_data(checked, pre, data_file, need_targets=True)
    outputs = run_model(model, x, batch_size)
    metrics = evaluate_outputs(model, outputs, y, compile_loss(model))
    if not baseline:
        return metrics
    from .baselines import baseline_metrics

    path = Path(run_dir) / "baseline.json"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} has no baseline.json (trained by an older archspec)")
    return metrics, baseline_metrics(model, json.loads(path.read_text()), x, y)


def predict(run_dir, data_file, out_file, batch_size: int = 256):
    """Probabilities and labels of every prediction for every row, in the input's order.

    Returns:
        the written ``pandas.DataFrame``.
    """
    model, pre, checked = load_run(run_dir)
    df, x, _ = _load_data(checked, pre, data_file, need_targets=False)
    result = prediction_frame(model, pre, checked, run_model(model, x, batch_size), df.index)
    out_path = Path(out_file)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    suffix = out_path.suffix.lower()
    if suffix == ".parquet":
        result.to_parquet(out_path, index=False)
    elif suffix in (".jsonl", ".ndjson"):
        result.to_json(out_path, orient="records", lines=True)
    else:
        result.to_csv(out_path, index=False)
    return result


def predict_frame(loaded, df, data_dir, batch_size: int = 256, file: str = "<rows>"):
    """Predictions for the rows of a DataFrame (what :func:`predict` writes, without the file).

    Args:
        loaded: ``(model, preprocessor, checked)`` from :func:`load_run`.
        df: rows with the spec's input columns (target columns are not needed).
        data_dir: folder that relative image paths start from.

    Raises:
        DataError: a row does not fit the spec (the message names the row and column).
    """
    from .data import preflight

    model, pre, checked = loaded
    preflight(checked, df, file, "predict", data_dir=Path(data_dir), targets=False)
    x, _ = pre.transform(df, Path(data_dir), targets=False)
    return prediction_frame(model, pre, checked, run_model(model, x, batch_size), df.index)


def prediction_frame(model, pre, checked, outputs: dict, index):
    """One column per prediction value (labels, probabilities, scores), as :func:`predict` writes."""
    import pandas as pd

    g = checked.graph
    cols: dict = {}
    for name in model.predictions:
        kind = prediction_kind(g, name)
        out = outputs[name]
        if kind == "regression":
            for j in range(out.shape[1]):
                cols[f"{name}" if out.shape[1] == 1 else f"{name}.{j}"] = out[:, j].numpy()
            continue
        probs = to_probabilities(model, name, out)
        names = label_names(model, pre, name)
        cfg = model.node_configs[name]
        if kind == "multiclass":
            names = names or [str(i) for i in range(probs.shape[1])]
            cols[name] = [names[i] for i in probs.argmax(1).tolist()]
            for j, label in enumerate(names):
                cols[f"{name}.prob.{label}"] = probs[:, j].numpy()
        elif kind == "multilabel":
            names = names or [str(i) for i in range(probs.shape[1])]
            thr = getattr(cfg, "threshold", 0.5)
            cols[name] = ["|".join(n for n, p in zip(names, row) if p > thr) for row in probs.tolist()]
            for j, label in enumerate(names):
                cols[f"{name}.prob.{label}"] = probs[:, j].numpy()
        elif kind == "binary":
            cols[name] = (probs > getattr(cfg, "threshold", 0.5)).long().numpy()
            cols[f"{name}.prob"] = probs.numpy()
        elif kind == "similarity":
            cols[f"{name}.score"] = out.numpy()
            cols[f"{name}.prob"] = torch.sigmoid(out).numpy()
    return pd.DataFrame(cols, index=index)


def format_metrics(metrics: dict, baseline: dict | None = None) -> str:
    rows = sorted(metrics.items())
    w = max((len(k) for k, _ in rows), default=10)
    if baseline is None:
        return "\n".join(f"{k:<{w}}  {v:.4f}" for k, v in rows)
    lines = [f"{'metric':<{w}}  {'model':>8}  {'baseline':>8}"]
    for k, v in rows:
        b = baseline.get(k)
        lines.append(f"{k:<{w}}  {v:>8.4f}  " + (f"{b:>8.4f}" if b is not None else f"{'':>8}"))
    return "\n".join(lines)


def metrics_json(metrics: dict) -> str:
    return json.dumps(metrics, indent=2, sort_keys=True)


def show_predictions(run_dir, data_file, predictions, n: int) -> str:
    """The first ``n`` rows: the text inputs (shortened), each prediction and, where the file has
    it, the true label."""
    from .data import read_table

    model, pre, checked = load_run(run_dir)
    df = read_table(data_file).head(n)
    g = checked.graph
    lines = []
    for i in range(min(n, len(df))):
        row = df.iloc[i]
        texts = [str(row[cfg.column]) for cfg in checked.spec.inputs.values()
                 if cfg.type == "text" and cfg.column in df.columns]
        head = " | ".join(t if len(t) <= 70 else t[:67] + "..." for t in texts) or f"row {i + 1}"
        lines.append(f"[{i + 1}] {head}")
        for name in model.predictions:
            if name not in predictions.columns:
                continue
            cfg = g.nodes[name]
            column = getattr(cfg, "target", None) or name
            if g.is_late(name) and column == name and cfg.inputs:
                column = getattr(g.nodes[cfg.inputs[0]], "target", None) or column
            truth = f"   (true: {row[column]})" if column in df.columns else ""
            lines.append(f"      {name:<16} {predictions.iloc[i][name]}{truth}")
    return "\n".join(lines)
