"""Evaluate and predict with a trained run: its own spec, preprocessing and best weights."""

from __future__ import annotations

import json
from pathlib import Path

from . import checkpoint as ckpt
from .build import compile_loss, compile_spec
from .errors import CheckpointError, DataError
from .graph import prediction_target
from .outputs import evaluate_outputs, label_names, predicted_labels, run_model, tensor_batches, to_probabilities
from .pipeline import check_text
from .prediction_kinds import home_of


def describe_checkpoint(run_dir, which="best") -> dict:
    """Which checkpoint ``which`` (``best``, ``last`` or a step number) names in a run, and why.

    Returns:
        ``{"checkpoint": "best"|"last", "step", "epoch", "metric", "value"}``: the pointer used
        (``best`` falls back to ``last`` when the run has none), the optimizer step and epoch it was
        saved at (``epoch`` is ``None`` for a checkpoint saved mid-epoch), and the validation metric
        that chooses ``best`` with its value at that epoch (``None`` without validation data).

    Raises:
        CheckpointError: not a run directory, or no checkpoint at that step.
    """
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a trained run directory (no checkpoints/)")
    pointers = {n: p for n in ("best", "last") if (p := ckpt.read_pointer(ckpt_dir, n, missing_ok=True))}
    if not pointers:
        raise CheckpointError(f"{run_dir} has no checkpoint yet — train it first")
    which = str(which)
    if which in ("best", "last"):
        name = which if which in pointers else "last" if "last" in pointers else "best"
    else:
        name = next((n for n, p in pointers.items() if str(p.get("step")) == which), None)
        if name is None:
            kept = ", ".join(f"{p.get('step')} ({n})" for n, p in pointers.items())
            raise CheckpointError(f"{run_dir} has no checkpoint at step {which}: it keeps steps {kept} — "
                                  "use --checkpoint best, last or one of these steps")
    step = pointers[name].get("step")
    metric = _selection_metric(run_dir)
    record = next((r for r in reversed(_metric_records(run_dir)) if r.get("step") == step), None)
    return {"checkpoint": name, "step": step, "epoch": record.get("epoch") if record else None,
            "metric": metric, "value": record.get(f"val/{metric}") if record else None}


def _selection_metric(run_dir) -> str:
    """The validation metric that picks ``best``: ``training.early_stopping.metric``, else ``loss``."""
    try:
        resolved = json.loads((Path(run_dir) / "resolved_spec.json").read_text())
        return ((resolved.get("training") or {}).get("early_stopping") or {}).get("metric") or "loss"
    except (OSError, ValueError, AttributeError):
        return "loss"


def _metric_records(run_dir) -> list[dict]:
    out = []
    try:
        lines = (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def checkpoint_line(info: dict) -> str:
    """``checkpoint best: step 36, epoch 3 (validation loss 0.4123)`` for text output."""
    where = f"step {info['step']}" + (f", epoch {info['epoch']}" if info.get("epoch") is not None else ", mid-epoch")
    why = f" (validation {info['metric']} {info['value']:.4f})" if isinstance(info.get("value"), (int, float)) else ""
    return f"checkpoint {info['checkpoint']}: {where}{why}"


def load_run(run_dir, which="best"):
    """``(model, preprocessor, checked)`` of a run, with the weights of checkpoint ``which``:
    ``best`` (else ``last``), ``last`` or a step number (see :func:`describe_checkpoint`)."""
    from .data import Preprocessor
    from .train import RunPaths, _stored_base

    run = RunPaths(Path(run_dir))
    if not run.spec.is_file() or not run.checkpoints.is_dir():
        raise CheckpointError(f"{run_dir} is not a trained run directory (no spec.yaml / checkpoints/)")
    name = describe_checkpoint(run_dir, which)["checkpoint"]
    checked = check_text(run.spec.read_text(), str(run.spec), base_dir=_stored_base(run)).raise_for_errors()
    pre = Preprocessor.load(run.preprocess, checked)
    model = compile_spec(checked, preprocessor=pre, weights_from_run=run.root)  # no pretrained download
    try:
        model.load_state_dict(ckpt.load_weights(run.checkpoints, name))
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint '{name}' of {run_dir} does not fit its spec: "
                              f"{str(exc).splitlines()[0]}") from None
    from .gbdt import load_heads

    load_heads(model, run_dir)
    model.eval()
    return model, pre, checked


def _loader(checked, pre, data_file, *, need_targets: bool, batch_size: int, members: bool = True, **kw):
    """The one data path (:class:`~archspec.data.Loader`) over a whole file, in file order, after a
    streaming pre-flight."""
    from .data import Loader, default_workers, open_table, preflight_table

    path = Path(data_file)
    if not path.is_file():
        raise DataError(f"data file not found: {data_file}")
    table = open_table(path)
    on_bad_row = checked.spec.training.on_bad_row
    preflight_table(checked, table, None, "evaluate" if need_targets else "predict", targets=need_targets,
                    on_bad_row=on_bad_row)
    loader = Loader(table, pre, batch_size=batch_size, targets=need_targets, num_workers=default_workers(checked),
                    rank=0, world_size=1, on_bad_row=on_bad_row, **kw)
    if not members:
        return loader
    from .members import with_members

    return with_members(checked, pre, loader, table, log=lambda *a: None)


def evaluate(run_dir, data_file, batch_size: int = 256, baseline: bool = False, checkpoint="best"):
    """Metrics of a trained run on a labelled file, keyed ``HEAD/METRIC`` (plus losses).

    Reads the file through the same data loader as training; memory holds the model's outputs and
    the targets (a few numbers per row), never the inputs.

    With ``baseline=True`` returns ``(metrics, baseline_metrics)``: the trivial baselines of
    :mod:`archspec.baselines` (fitted on the run's training split) on the same file.
    """
    model, pre, checked = load_run(run_dir, checkpoint)
    from .baselines import baseline_inputs, baseline_metrics

    keep = baseline_inputs(model) if baseline else []
    loader = _loader(checked, pre, data_file, need_targets=True, batch_size=batch_size)
    try:
        result = run_model(model, loader, keep_inputs=keep)
    finally:
        loader.close()
    outputs, y = result[0], result[1]
    if not outputs:
        raise DataError(f"{data_file}: every row was skipped (training.on_bad_row: skip) — nothing to evaluate")
    metrics = evaluate_outputs(model, outputs, y, compile_loss(model))
    if not baseline:
        return metrics
    path = Path(run_dir) / "baseline.json"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} has no baseline.json (trained by an older archspec)")
    x = result[2]
    if not x:
        import torch

        x = {"_rows": torch.zeros(len(next(iter(y.values()))) if y else 0)}
    return metrics, baseline_metrics(model, json.loads(path.read_text()), x, y)


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
    outputs = run_model(model, tensor_batches(x, batch_size))[0]
    return prediction_frame(model, pre, checked, outputs, df.index)


def prediction_frame(model, pre, checked, outputs: dict, index):
    """One column per prediction value (labels, probabilities, scores), as :func:`predict` writes."""
    import pandas as pd

    cols: dict = {}
    for name in model.predictions:  # the layout is its kind's (archspec.prediction_kinds); the labels
        out = outputs[name]         # are the ones the metrics score (outputs.predicted_labels)
        cols.update(home_of(checked.graph, name).columns(name, out, to_probabilities(model, name, out),
                                                         predicted_labels(model, name, out),
                                                         label_names(model, pre, name)))
    return pd.DataFrame(cols, index=index)


def predict(run_dir, data_file, out_file, batch_size: int = 256, checkpoint="best"):
    """Probabilities and labels of every prediction for every row, in the input's order, written
    batch by batch (CSV, JSON Lines or Parquet by ``out_file``'s extension): memory stays flat
    whatever the size of the file.

    Rows skipped under ``training.on_bad_row: skip`` are left out of the output; with ``skip`` the
    output starts with a ``row`` column (the 0-based data row of the input file) so that every
    prediction can be matched to its row.

    Returns:
        a :class:`~archspec.data.writers.Written` summary (rows, columns, the first rows).
    """
    import torch

    from .data.writers import PredictionWriter
    from .output_paths import PREDICTION_FORMATS, check_output_path, run_inputs, writing

    check_output_path(out_file, inputs={data_file: "the data file", **run_inputs(run_dir)}, kinds=PREDICTION_FORMATS)
    model, pre, checked = load_run(run_dir, checkpoint)
    loader = _loader(checked, pre, data_file, need_targets=False, batch_size=batch_size)
    try:
        with writing(out_file) as out_path, torch.no_grad(), \
                PredictionWriter(out_path, rows=checked.spec.training.on_bad_row == "skip") as writer:
            for inputs, _, rows in loader:
                if not len(rows):
                    continue
                outputs = {k: v.float() for k, v in model(inputs).items()}
                frame = prediction_frame(model, pre, checked, outputs, rows.numpy())
                writer.write({c: frame[c].to_numpy() for c in frame.columns}, rows.numpy())
    finally:
        loader.close()
    return writer.summary(skipped=loader.skipped)


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
    it, the true label. A similarity head shows its score and probability, a binary head its
    probability; an empty label set shows as ``(none)``."""
    from .data import open_table
    from .data.convert import is_missing
    from .train import RunPaths, _stored_base

    run = RunPaths(Path(run_dir))
    checked = check_text(run.spec.read_text(), str(run.spec), base_dir=_stored_base(run)).raise_for_errors()
    df = open_table(data_file).head(n)  # only these rows are read
    g = checked.graph
    names = [p for p in g.predictions() if p in predictions.columns or f"{p}.score" in predictions.columns]
    width = max((len(p) for p in names), default=0)

    def text(value) -> str:
        return "(none)" if is_missing(value) or str(value).strip() == "" else str(value)

    lines = []
    for i in range(min(n, len(df))):
        row, pred = df.iloc[i], predictions.iloc[i]
        texts = [str(row[cfg.column]) for cfg in checked.spec.inputs.values()
                 if cfg.type == "text" and cfg.column in df.columns]
        head = " | ".join(t if len(t) <= 70 else t[:67] + "..." for t in texts) or f"row {i + 1}"
        lines.append(f"[{i + 1}] {head}")
        for name in names:
            shown = home_of(g, name).shown(name, pred, text)
            column = prediction_target(g, name)
            truth = f"   (true: {text(row[column])})" if column in df.columns else ""
            lines.append(f"      {name:<{width}}  {shown}{truth}")
    return "\n".join(lines)
