"""Experiment tracking: TensorBoard and MLflow, off by default.

The training loop holds one :class:`Tracker` and calls it at three points: after every optimizer
step (:meth:`Tracker.step`), after every epoch's evaluation (:meth:`Tracker.epoch`, which may ask
the loop to stop: sweeps prune trials through it) and at the end (:meth:`Tracker.end`). Everything
else lives here.

- TensorBoard (``torch.utils.tensorboard``): event files in ``RUN/tensorboard/``.
- MLflow: a SQLite store ``sqlite:///<folder of the run>/mlflow.db`` by default, with artifacts in
  ``<folder of the run>/mlartifacts/`` beside it (MLflow 3.13+ refuses its old ``./mlruns`` file
  store), or any tracking URI given. A resumed run continues the same MLflow run; a sweep's trials
  are nested runs under the sweep's run.

What is logged: per-step training loss (total and per head) and learning rate, the effective loss
weight of every head, per-epoch validation metrics, the resolved spec (as parameters and as a file),
the graph picture (Mermaid and Graphviz source) and, at the end, the run's artefacts (spec, resolved
spec, metrics, baseline, preprocessing, best weights, learning curves).
"""

from __future__ import annotations

import atexit
import json
import math
from pathlib import Path

from .errors import ArchspecError

BACKENDS = ("tensorboard", "mlflow")
_STATE_FILE = "tracking.json"  # in the run directory: the MLflow run id, so a resumed run continues it


class TrackingError(ArchspecError):
    """A tracking backend is not installed or its store cannot be used."""


def default_mlflow_uri(folder) -> str:
    """``sqlite:///<folder>/mlflow.db``: MLflow's store next to the runs."""
    return f"sqlite:///{Path(folder).resolve() / 'mlflow.db'}"


class Callback:
    """Something the loop calls besides the backends (e.g. a sweep's pruning); all no-ops."""

    def step(self, step: int, loss: float, lr: float) -> None:
        pass

    def epoch(self, record: dict) -> bool:
        """Return True to ask the loop to stop after this epoch."""
        return False

    def end(self, run_dir: Path, status: str) -> None:
        pass


class Tracker:
    """What the training loop talks to. Without backends or callbacks every call is a no-op."""

    def __init__(self, backends=(), callbacks=()):
        self.backends = list(backends)
        self.callbacks = list(callbacks)
        self.stop_reason: str | None = None
        self._closed = False
        if self.backends:
            atexit.register(self._abort)

    @property
    def active(self) -> bool:
        return bool(self.backends or self.callbacks)

    def step(self, step: int, loss: float, lr: float, per_head: dict | None = None) -> None:
        """After an optimizer step: the step's total loss, learning rate and per-head losses."""
        if not self.active:
            return
        heads = {k: float(v) for k, v in (per_head or {}).items()} if self.backends else {}
        for b in self.backends:
            b.step(step, loss, lr, heads)
        for c in self.callbacks:
            c.step(step, loss, lr)

    def epoch(self, record: dict) -> bool:
        """After an epoch's evaluation (``record`` is the metrics.jsonl line); True = stop now."""
        stop = False
        for b in self.backends:
            b.epoch(record)
        for c in self.callbacks:
            if c.epoch(record):
                stop = True
                self.stop_reason = getattr(c, "reason", None) or type(c).__name__
        return stop

    def end(self, run_dir, status: str = "FINISHED") -> None:
        """At the end of training: log the run's artefacts and close every backend."""
        if self._closed:
            return
        self._closed = True
        for b in self.backends:
            b.end(Path(run_dir), status)
        for c in self.callbacks:
            c.end(Path(run_dir), status)
        if self.backends:
            atexit.unregister(self._abort)
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    def _abort(self) -> None:  # the process ends without end(): mark runs as failed, keep what was logged
        if not self._closed:
            self._closed = True
            for b in self.backends:
                try:
                    b.close("FAILED")
                except Exception:  # noqa: BLE001 - best effort at exit
                    pass


_ACTIVE: list[Tracker] = []


def abort_active(status: str = "FAILED") -> None:
    """Close every tracker of this process that training left open (after an exception)."""
    while _ACTIVE:
        t = _ACTIVE.pop()
        if not t._closed:
            t._closed = True
            for b in t.backends:
                b.close(status)


def resolve_backends(spec_tracking, track=None) -> list[str]:
    """The backends to use: the CLI's ``--track`` values, else the spec's ``training.tracking``."""
    names = list(track or [])
    if not names and spec_tracking is not None:
        names = list(spec_tracking.backends)
    bad = [n for n in names if n not in BACKENDS]
    if bad:
        raise TrackingError(f"unknown tracking backend '{bad[0]}' — known: {', '.join(BACKENDS)}")
    return list(dict.fromkeys(names))


def start_tracking(checked, run_dir, *, resume: bool = False, enabled: bool = True, backends=None,
                   uri: str | None = None, experiment: str | None = None, parent: dict | None = None,
                   callbacks=(), run_name: str | None = None) -> Tracker:
    """The tracker of one training run.

    Args:
        checked: the run's checked spec (its ``training.tracking`` is read).
        run_dir: the run directory.
        resume: continue the run's MLflow run (its id is kept in ``RUN/tracking.json``).
        enabled: False on the non-main processes of a distributed run.
        backends: ``["tensorboard", "mlflow"]`` overriding the spec (the CLI's ``--track``).
        uri: MLflow tracking URI (default: the spec's, else a SQLite store next to the run).
        experiment: MLflow experiment name (default: the spec's, else the spec's name).
        parent: ``{"uri":..., "run_id":..., "experiment_id":...}`` of a sweep's MLflow run: this run
            becomes a nested run under it.
        callbacks: extra :class:`Callback` objects (pruning).

    Raises:
        TrackingError: a backend is unknown or not installed.
    """
    if not enabled:
        return Tracker()
    cfg = getattr(checked.spec.training, "tracking", None)
    names = resolve_backends(cfg, backends)
    run_dir = Path(run_dir)
    made = []
    for name in names:
        if name == "tensorboard":
            made.append(_TensorBoard(checked, run_dir, resume))
        else:
            made.append(_MLflow(checked, run_dir, resume,
                                uri or (parent or {}).get("uri") or (cfg.mlflow_uri if cfg else None),
                                experiment or (cfg.experiment if cfg else None), parent, run_name))
    t = Tracker(made, callbacks)
    if made:
        _ACTIVE.append(t)
    return t


def _numbers(record: dict) -> dict:
    return {k: float(v) for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def _loss_weights(checked) -> dict:
    """The effective (static) loss weight of every head: ``loss.weight`` or 1.0."""
    out = {}
    for name, head in checked.spec.heads.items():
        loss = getattr(head, "loss", None)
        w = getattr(loss, "weight", None) if loss is not None else None
        out[name] = float(w) if isinstance(w, (int, float)) else 1.0
    return out


def _graph_sources(checked) -> dict:
    from .diagram import render

    return {"graph.mmd": render(checked, "mermaid", checked.shapes),
            "graph.dot": render(checked, "dot", checked.shapes)}


def graph_png(checked, path: Path) -> Path | None:
    """Draw the spec's graph to a PNG with matplotlib (no system graphviz needed): one column per
    depth, each node a box with its name, type and output shape, an arrow per edge (dashed into a
    late fusion). ``None`` when matplotlib is not installed (the Mermaid/DOT sources are still logged)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import FancyBboxPatch
    except ImportError:
        return None
    from .diagram import _edges, _label_parts

    g = checked.graph
    edges = _edges(checked)
    depth: dict = {}
    for name in g.order:  # topological: every source already has its depth
        depth[name] = 1 + max((depth[s] for s, t, *_ in edges if t == name and s in depth), default=-1)
    cols: dict = {}
    for name in g.order:
        cols.setdefault(depth[name], []).append(name)
    pos = {}
    height = max(len(v) for v in cols.values())
    for d, names in cols.items():
        for i, name in enumerate(names):
            pos[name] = (d * 3.2, (len(names) - 1) / 2 - i)  # each column centred on y = 0
    colours = {"inputs": "#dbeafe", "encoders": "#dcfce7", "fusions": "#fef3c7", "heads": "#fde2e2"}
    fig, ax = plt.subplots(figsize=(max(4.0, 3.2 * len(cols)), max(2.5, 1.3 * height)))
    for src, dst, label, dashed in edges:
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        ax.annotate("", xy=(x1 - 1.25, y1), xytext=(x0 + 1.25, y0),
                    arrowprops=dict(arrowstyle="->", linestyle="--" if dashed else "-", color="#555"))
        if label:
            ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.1, label, fontsize=7, ha="center", color="#555")
    for name, (x, y) in pos.items():
        n, t, shape = _label_parts(checked, name, checked.shapes)
        ax.add_patch(FancyBboxPatch((x - 1.25, y - 0.38), 2.5, 0.76, boxstyle="round,pad=0.02",
                                    fc=colours.get(g.section[name], "#eee"), ec="#333"))
        ax.text(x, y + 0.12, n, ha="center", va="center", fontsize=9, weight="bold")
        ax.text(x, y - 0.16, f"{t} {shape}", ha="center", va="center", fontsize=7)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 1.5, max(xs) + 1.5)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    ax.axis("off")
    ax.set_title(checked.spec.name, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _flatten(d, prefix: str = "") -> dict:
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(d, list) and d and all(isinstance(x, dict) for x in d):
        for i, v in enumerate(d):
            out.update(_flatten(v, f"{prefix}.{i}"))
    else:
        out[prefix] = json.dumps(d) if isinstance(d, (list, dict)) else str(d)
    return out


class _TensorBoard:
    """Event files under ``RUN/tensorboard``: ``train/loss``, ``train/lr``, ``train/loss/HEAD``,
    ``loss_weight/HEAD``, every epoch value under its metrics.jsonl key (``val/HEAD/METRIC``)."""

    def __init__(self, checked, run_dir: Path, resume: bool):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise TrackingError("TensorBoard tracking needs the `tensorboard` package: "
                                "pip install 'archspec[track]'") from None
        self.dir = run_dir / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.dir))
        if not resume:
            from .train import resolved_spec

            spec_json = json.dumps(resolved_spec(checked), indent=2)
            self.writer.add_text("spec", "```\n" + spec_json + "\n```", 0)
            self.writer.add_text("graph", "```\n" + _graph_sources(checked)["graph.mmd"] + "\n```", 0)
            self._graph_image(checked, run_dir)
            for head, w in _loss_weights(checked).items():
                self.writer.add_scalar(f"loss_weight/{head}", w, 0)

    def _graph_image(self, checked, run_dir: Path):
        import tempfile

        import numpy as np
        from PIL import Image

        with tempfile.TemporaryDirectory() as tmp:
            png = graph_png(checked, Path(tmp) / "graph.png")
            if png is not None:
                self.writer.add_image("graph", np.asarray(Image.open(png).convert("RGB")), 0, dataformats="HWC")

    def step(self, step, loss, lr, heads):
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/lr", lr, step)
        for k, v in heads.items():
            self.writer.add_scalar(f"train/loss/{k}", v, step)

    def epoch(self, record):
        step = int(record.get("step", 0))
        for k, v in _numbers(record).items():
            if k not in ("step",):
                self.writer.add_scalar(k if "/" in k else f"epoch/{k}", v, step)
        self.writer.flush()

    def end(self, run_dir, status):
        self.writer.add_text("status", status, 0)
        self.close(status)

    def close(self, status):
        self.writer.flush()
        self.writer.close()


class _MLflow:
    """One MLflow run per training run, written through ``MlflowClient`` (no global state, so a
    sweep's trials in one process never mix). Per-step values are buffered and sent in batches."""

    def __init__(self, checked, run_dir: Path, resume: bool, uri, experiment, parent, run_name):
        import logging

        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise TrackingError("MLflow tracking needs the `mlflow` package: pip install 'archspec[track]'") from None
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        folder = run_dir.resolve().parent
        self.uri = uri or default_mlflow_uri(folder)
        self.run_dir = run_dir
        self.buffer: list = []
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            if parent:
                exp_id = parent["experiment_id"]
            else:
                exp_id = experiment_id(self.client, experiment or checked.spec.name, folder)
        except ImportError as exc:
            raise TrackingError(f"MLflow store {self.uri} needs a missing package ({exc.name}): "
                                "pip install 'archspec[track]'") from None
        except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; name the store
            raise TrackingError(f"cannot open the MLflow store {self.uri}: {str(exc).splitlines()[0]}") from None
        state_file = run_dir / _STATE_FILE
        state = json.loads(state_file.read_text()) if resume and state_file.is_file() else {}
        if state.get("mlflow_run_id") and state.get("mlflow_uri") == self.uri:
            self.run_id = state["mlflow_run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            tags = {"archspec.run_dir": str(run_dir.resolve()), "archspec.spec": checked.spec.name}
            if parent:
                tags["mlflow.parentRunId"] = parent["run_id"]
            run = self.client.create_run(exp_id, run_name=run_name or run_dir.name, tags=tags)
            self.run_id = run.info.run_id
            from .checkpoint import atomic_write_json

            atomic_write_json(state_file, {"mlflow_uri": self.uri, "mlflow_run_id": self.run_id,
                                           "experiment_id": exp_id})
            self._log_start(checked)

    def _log_start(self, checked):
        from mlflow.entities import Param

        from .train import resolved_spec

        spec = resolved_spec(checked)
        params = {k: v[:6000] for k, v in _flatten(spec).items()}
        params.update({f"loss_weight.{h}": str(w) for h, w in _loss_weights(checked).items()})
        items = [Param(k[:250], v) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i:i + 100])
        self.client.log_dict(self.run_id, spec, "resolved_spec.json")
        for name, text in _graph_sources(checked).items():
            self.client.log_text(self.run_id, text, name)
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            png = graph_png(checked, Path(tmp) / "graph.png")
            if png is not None:
                self.client.log_artifact(self.run_id, str(png))
        for h, w in _loss_weights(checked).items():
            self._metric(f"loss_weight/{h}", w, 0)

    def _metric(self, key, value, step):
        import time

        from mlflow.entities import Metric

        self.buffer.append(Metric(key, float(value), int(time.time() * 1000), int(step)))
        if len(self.buffer) >= 900:
            self.flush()

    def flush(self):
        for i in range(0, len(self.buffer), 900):  # below MLflow's 1,000 metrics per batch
            self.client.log_batch(self.run_id, metrics=self.buffer[i:i + 900])
        self.buffer = []

    def step(self, step, loss, lr, heads):
        self._metric("train/loss", loss, step)
        self._metric("train/lr", lr, step)
        for k, v in heads.items():
            self._metric(f"train/loss/{k}", v, step)

    def epoch(self, record):
        step = int(record.get("step", 0))
        for k, v in _numbers(record).items():
            if k != "step":
                self._metric(k, v, step)
        self.flush()

    def end(self, run_dir: Path, status):
        self.flush()
        for name in ("spec.yaml", "resolved_spec.json", "metrics.jsonl", "baseline.json", "source.json",
                     "learning_curves.png"):
            p = run_dir / name
            if p.is_file():
                self.client.log_artifact(self.run_id, str(p))
        if (run_dir / "preprocess").is_dir():
            self.client.log_artifacts(self.run_id, str(run_dir / "preprocess"), "preprocess")
        best = _best_checkpoint_files(run_dir)
        for p in best:
            self.client.log_artifact(self.run_id, str(p), "checkpoints")
        self.close(status)

    def close(self, status):
        if self.buffer:
            self.flush()
        self.client.set_terminated(self.run_id, status=status)


def _best_checkpoint_files(run_dir: Path) -> list[Path]:
    """The pointer and weights file of the ``best`` (else ``last``) checkpoint."""
    ck = run_dir / "checkpoints"
    for name in ("best", "last"):
        pointer = ck / f"{name}.json"
        if pointer.is_file():
            try:
                p = json.loads(pointer.read_text())
            except ValueError:
                return []
            weights = ck / str(p.get("weights", ""))
            return [pointer, weights] if weights.is_file() else [pointer]
    return []


def experiment_id(client, name: str, folder: Path) -> str:
    """The id of MLflow experiment ``name``, created with its artifacts in ``folder/mlartifacts``
    when the store is the default local one (``./mlruns`` would otherwise be used)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if client.tracking_uri.startswith("sqlite:///"):
        location = (Path(folder) / "mlartifacts" / name).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # noqa: BLE001 - another worker created it meanwhile
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id
