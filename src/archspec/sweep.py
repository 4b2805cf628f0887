"""Hyperparameter sweeps on Optuna: ``archspec sweep SPEC --config SWEEP.yaml``.

A sweep file names spec paths and their distributions, the metric to optimise, the number of
trials, the sampler and the pruner. Every trial's spec is the base spec with the sampled values
written in; it is checked (the same checker as ``archspec validate``) before it trains, and a trial
whose spec is invalid is reported at the sweep file's line and marked failed. Each trial trains
into an ordinary run directory ``SWEEP_DIR/trials/NNNN``.

The study lives in Optuna's RDB storage: ``sqlite:///SWEEP_DIR/study.db`` by default, or any
SQLAlchemy URL (``--storage postgresql://...``) shared by several workers. A killed sweep resumes
with ``archspec sweep --resume SWEEP_DIR``: finished trials are kept, a trial that was running when
its worker died is marked failed and its parameters are queued again.

The models here (the sweep file's language) are torch- and optuna-free; Optuna is imported only
when a sweep runs.
"""

from __future__ import annotations

import copy
import json
import math
import os
import socket
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, ValidationError, model_validator

from .errors import (EXIT_CHECKPOINT, ERROR, WARNING, ArchspecError, Diagnostic, SpecError, did_you_mean,
                     format_path)
from .spec.base import StrictModel
from .tracking import Callback

SWEEP_SCHEMA_ID = "https://archspec.dev/schema/v1/sweep.schema.json"
Number = Annotated[float, Field(allow_inf_nan=False)]


class SweepError(ArchspecError):
    """A sweep directory or storage cannot be used (the sweep file's own mistakes are SpecErrors)."""

    exit_code = EXIT_CHECKPOINT


# --- the sweep file's language -------------------------------------------------------------------

class UniformParam(StrictModel):
    """A float drawn uniformly from [`low`, `high`]."""

    type: Literal["uniform"]
    low: Number
    high: Number
    step: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    """Draw only `low + k·step` (a discrete grid; required by the `grid` sampler)."""

    @model_validator(mode="after")
    def _order(self):
        if self.low >= self.high:
            raise ValueError("`low` must be below `high`")
        return self


class LogUniformParam(StrictModel):
    """A positive float drawn uniformly in log space from [`low`, `high`] (learning rates)."""

    type: Literal["log_uniform"]
    low: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    high: Annotated[float, Field(gt=0, allow_inf_nan=False)]

    @model_validator(mode="after")
    def _order(self):
        if self.low >= self.high:
            raise ValueError("`low` must be below `high`")
        return self


class IntParam(StrictModel):
    """An integer drawn from [`low`, `high`] (both included)."""

    type: Literal["int"]
    low: int
    high: int
    step: Annotated[int, Field(gt=0)] = 1
    """Draw only `low + k·step`."""
    log: bool = False
    """Draw uniformly in log space (needs `low` ≥ 1 and `step: 1`)."""

    @model_validator(mode="after")
    def _order(self):
        if self.low >= self.high:
            raise ValueError("`low` must be below `high`")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("`log: true` needs `low` >= 1 and `step: 1`")
        return self


class CategoricalParam(StrictModel):
    """One of a list of values; a value may be any YAML value (a number, a string, a list such as
    `[64, 32]` for `layers`, a mapping such as a whole `schedule`)."""

    type: Literal["categorical"]
    choices: Annotated[list[Any], Field(min_length=1, max_length=1000)]


Param = Annotated[Union[UniformParam, LogUniformParam, IntParam, CategoricalParam], Field(discriminator="type")]


class TPESampler(StrictModel):
    """Optuna's Tree-structured Parzen Estimator (the default)."""

    type: Literal["tpe"]
    seed: Annotated[int, Field(ge=0)] | None = 0
    """Seed of the sampler (a study is reproducible with one worker); null for a random seed."""
    startup_trials: Annotated[int, Field(ge=1)] = 10
    """Random trials before TPE starts modelling."""


class RandomSampler(StrictModel):
    """Independent uniform draws."""

    type: Literal["random"]
    seed: Annotated[int, Field(ge=0)] | None = 0


class GridSampler(StrictModel):
    """Every combination of the (discrete) values: categorical choices, `int` ranges, `uniform` with
    a `step`. `trials` caps how many combinations run."""

    type: Literal["grid"]
    seed: Annotated[int, Field(ge=0)] | None = 0
    """Seeds the order in which combinations are visited."""


Sampler = Annotated[Union[TPESampler, RandomSampler, GridSampler], Field(discriminator="type")]


class NoPruner(StrictModel):
    """Every trial trains to its end (the default)."""

    type: Literal["none"]


class MedianPruner(StrictModel):
    """Stop a trial whose best value so far is worse than the median of earlier trials at the same epoch."""

    type: Literal["median"]
    startup_trials: Annotated[int, Field(ge=0)] = 2
    """Finished trials needed before anything is pruned."""
    warmup_epochs: Annotated[int, Field(ge=0)] = 1
    """Epochs every trial trains before it may be pruned."""


class SuccessiveHalvingPruner(StrictModel):
    """Asynchronous successive halving: at epochs `min_epochs·factor^k` keep only the best 1/`factor`."""

    type: Literal["successive_halving"]
    min_epochs: Annotated[int, Field(ge=1)] = 1
    """Epochs before the first rung."""
    reduction_factor: Annotated[int, Field(ge=2)] = 3


Pruner = Annotated[Union[NoPruner, MedianPruner, SuccessiveHalvingPruner], Field(discriminator="type")]


class SweepConfig(StrictModel):
    """A hyperparameter sweep over one spec (`archspec sweep SPEC --config SWEEP.yaml`)."""

    sweep: Literal[1]
    """Sweep file format version; always `1`."""
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")] | None = None
    """Study name in the storage (workers sharing a storage join the study of the same name);
    default: the spec's `name`."""
    metric: Annotated[str, Field(min_length=1, max_length=128)]
    """Validation value to optimise: `HEAD/METRIC` (e.g. `sentiment/accuracy`), `HEAD/loss` or `loss`.
    A trial's value is its best epoch's value (the epoch whose weights `best` keeps)."""
    direction: Literal["auto", "maximize", "minimize"] = "auto"
    """`auto` minimises losses and errors (`loss`, `mae`, `rmse`, `mse`) and maximises everything else."""
    trials: Annotated[int, Field(gt=0, le=100_000, strict=True)]
    """Number of trials of the study (all workers together; failed trials count, killed ones do not)."""
    sampler: Sampler = TPESampler(type="tpe")
    pruner: Pruner = NoPruner(type="none")
    params: Annotated[dict[Annotated[str, Field(min_length=1, max_length=512)], Param],
                      Field(min_length=1)]
    """Spec path → distribution, e.g. `training.optimizer.lr: {type: log_uniform, low: 1e-4, high: 1e-2}`.
    A path is dot-separated (`heads.sentiment.loss.weight`); a number selects a list item
    (`encoders.body.layers.0`); missing mappings along the path are created."""
    first_trials: Annotated[list[dict[str, Any]], Field(max_length=1000)] = []
    """Parameter values to try before the sampler proposes any (e.g. the spec's current settings, or a
    known good configuration); each maps some of `params`' paths to a value in their range."""

    def resolved_direction(self) -> str:
        if self.direction != "auto":
            return self.direction
        return "minimize" if self.metric.split("/")[-1] in ("loss", "mae", "rmse", "mse") else "maximize"


def sweep_schema() -> dict:
    """JSON Schema (draft 2020-12) of the sweep file, generated from the models."""
    schema = SweepConfig.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SWEEP_SCHEMA_ID,
            **schema, "title": "archspec sweep"}


# --- reading and checking a sweep file (torch-free) ----------------------------------------------

def load_sweep(path) -> tuple[SweepConfig, Any, Any]:
    """``(config, raw data, source map)`` of a sweep file.

    Raises:
        SpecError: the file does not load or does not fit the sweep language (located diagnostics).
    """
    from .load import load_file
    from .pydantic_errors import to_diagnostics

    try:
        data, smap = load_file(path)
    except SpecError as exc:  # the loader speaks of spec files
        raise SpecError([Diagnostic(d.code, d.severity, d.path, d.message.replace("spec file", "sweep file"),
                                    d.hint, d.file, d.line, d.col) for d in exc.diagnostics]) from None
    if not isinstance(data, dict):
        line, col = smap.locate(())
        raise SpecError([Diagnostic("E-YAML-DOC", ERROR, (), "a sweep file is a mapping at the top level",
                                    "start from the example in docs/loop.md", smap.file, line, col)])
    try:
        cfg = SweepConfig.model_validate(data)
    except ValidationError as exc:
        raise SpecError(to_diagnostics(exc, data, smap, SweepConfig)) from None
    return cfg, data, smap


def split_path(path: str) -> list:
    return [int(p) if p.isdigit() else p for p in path.split(".")]


def set_path(data: dict, path: str, value, defaults=None) -> None:
    """Write ``value`` at the dotted ``path`` of a spec's raw data.

    A mapping missing along the path is copied from ``defaults`` (the resolved spec, so that
    ``training.optimizer.lr`` in a spec without an ``optimizer`` writes the default optimizer with
    that rate), else created empty.

    Raises:
        KeyError / IndexError / TypeError: with a readable message, when the path cannot be written.
    """
    parts = split_path(path)
    cur = data
    dflt = defaults
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = format_path(parts[:i]) or "the spec"
        if isinstance(cur, list):
            if not isinstance(part, int):
                raise TypeError(f"{where} is a list: select an item with a number, not '{part}'")
            if part >= len(cur):
                raise IndexError(f"{where} has {len(cur)} items; there is no item {part}")
        elif isinstance(cur, dict):
            part = str(part)
            sub = dflt.get(part) if isinstance(dflt, dict) else None
            if not last and part not in cur:
                cur[part] = copy.deepcopy(sub) if isinstance(sub, dict) else {}
            dflt = sub
        else:
            raise TypeError(f"{where} is a single value ({json.dumps(cur)}), not a mapping or list")
        if last:
            cur[part] = value
        else:
            if isinstance(cur, list):
                dflt = dflt[part] if isinstance(dflt, list) and part < len(dflt) else None
            cur = cur[part]


def check_sweep(cfg: SweepConfig, smap, checked) -> list[Diagnostic]:
    """Problems of a sweep file against its (valid) base spec: unknown metric, unknown nodes on
    paths, paths that cannot be written, distributions the grid sampler cannot enumerate."""
    from .graph import prediction_metrics

    diags: list[Diagnostic] = []

    def err(path, msg, hint="", key=False, severity=ERROR, code="E-SWEEP"):
        line, col = smap.locate(path, key=key)
        diags.append(Diagnostic(code, severity, path, msg, hint, smap.file, line, col))

    g = checked.graph
    preds = list(g.predictions())
    metric = cfg.metric
    if metric != "loss":
        head, _, name = metric.partition("/")
        if head not in preds:
            err(("metric",), f"'{head}' is not a prediction of spec '{checked.spec.name}'",
                (did_you_mean(head, preds) + " " if did_you_mean(head, preds) else "")
                + f"predictions: {', '.join(preds)}; or use `loss`")
        else:
            known = list(prediction_metrics(g, head)) + ["loss"]
            if name not in known:
                near = did_you_mean(name, known)
                err(("metric",), f"'{head}' reports no metric '{name}'",
                    (near + " " if near else "") + f"it reports: {', '.join(f'{head}/{k}' for k in known)}")
    sections = ("inputs", "encoders", "fusions", "heads")
    raw = checked.data if isinstance(checked.data, dict) else {}
    for path, dist in cfg.params.items():
        parts = split_path(path)
        top = str(parts[0])
        if top in sections:
            nodes = raw.get(top) or {}
            if len(parts) < 3:
                err(("params", path), f"'{path}' names a whole node, not one of its fields",
                    f"write e.g. `{top}.NAME.FIELD`", key=True)
                continue
            if str(parts[1]) not in nodes:
                near = did_you_mean(str(parts[1]), nodes)
                err(("params", path), f"spec '{checked.spec.name}' has no {top[:-1]} '{parts[1]}'",
                    (near + " " if near else "") + f"{top}: {', '.join(nodes) or '(none)'}", key=True)
                continue
        elif top not in ("training", "name", "description"):
            near = did_you_mean(top, [*sections, "training"])
            err(("params", path), f"'{top}' is not a section of a spec",
                (near + " " if near else "") + "paths start with inputs, encoders, fusions, heads or training",
                key=True)
            continue
        try:
            set_path(copy.deepcopy(raw), path, 0, _resolved(checked))
        except (TypeError, IndexError) as exc:
            err(("params", path), f"cannot write '{path}': {exc}", key=True)
        if isinstance(cfg.sampler, GridSampler) and (
                isinstance(dist, LogUniformParam) or (isinstance(dist, UniformParam) and dist.step is None)):
            err(("params", path, "type"), "the grid sampler needs discrete values",
                "give `uniform` a `step`, or use `int` / `categorical`")
    for i, first in enumerate(cfg.first_trials):
        for path, v in first.items():
            where = ("first_trials", i, path)
            dist = cfg.params.get(path)
            if dist is None:
                near = did_you_mean(path, cfg.params)
                err(where, f"'{path}' is not one of `params`", near or f"params: {', '.join(cfg.params)}", key=True)
            elif not _in_range(dist, v):
                err(where, f"{json.dumps(v)} is outside this parameter's distribution",
                    "give a value the distribution can draw")
    return diags


def _in_range(d, v) -> bool:
    if isinstance(d, CategoricalParam):
        return any(json.dumps(v) == json.dumps(c) for c in d.choices)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if isinstance(d, IntParam) and not isinstance(v, int):
        return False
    return d.low <= v <= d.high


def _encode(d, v):
    return json.dumps(v) if isinstance(d, CategoricalParam) else v


def _extremes(dist) -> list:
    if isinstance(dist, CategoricalParam):
        return list(dist.choices)
    if isinstance(dist, IntParam):
        return [dist.low, dist.high]
    return [float(dist.low), float(dist.high)]


def _resolved(checked) -> dict:
    return checked.spec.model_dump(mode="json", by_alias=True, exclude_none=True)


def preview_params(cfg: SweepConfig, smap, raw: dict, spec_file: str, base_dir, defaults=None) -> list[Diagnostic]:
    """Warnings for each value of the search space's edges (bounds, every choice) that makes the
    spec invalid on its own, located at the sweep file's line, before any trial trains."""
    from .pipeline import check_text

    out = []
    for path, dist in cfg.params.items():
        for v in _extremes(dist):
            data = copy.deepcopy(raw)
            try:
                set_path(data, path, v, defaults)
            except (TypeError, IndexError):
                break
            errs = check_text(_dump(data), spec_file, base_dir=base_dir).errors
            if errs:
                line, col = smap.locate(("params", path), key=True)
                out.append(Diagnostic("W-SWEEP-SPACE", WARNING, ("params", path),
                                      f"value {json.dumps(v)} makes the spec invalid: {errs[0].render()}",
                                      "trials that draw it will fail; narrow the range", smap.file, line, col))
    return out


def _dump(data) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None)


# path fields of a spec that are relative to the spec's folder: made absolute in trial specs, which
# live in the sweep directory
def absolutize_paths(data: dict, base_dir: Path) -> dict:
    def fix(v, always: bool = False):
        if isinstance(v, str) and v and not Path(v).expanduser().is_absolute():
            p = base_dir / Path(v).expanduser()
            if always or p.exists() or v.startswith((".", "~")):  # a model name may be a hub name
                return str(p.resolve())
        return v

    tdata = (data.get("training") or {}).get("data") if isinstance(data.get("training"), dict) else None
    if isinstance(tdata, dict):
        for k in ("train", "validation", "test"):
            if k in tdata:
                tdata[k] = fix(tdata[k], always=True)
    for section in ("inputs", "encoders"):
        nodes = data.get(section)
        if not isinstance(nodes, dict):
            continue
        for node in nodes.values():
            if not isinstance(node, dict):
                continue
            for k in ("pretrained", "weights_path"):
                if k in node:
                    node[k] = fix(node[k])
            tok = node.get("tokenizer")
            if isinstance(tok, dict) and "name" in tok:
                tok["name"] = fix(tok["name"])
    return data


# --- running a sweep (imports optuna) -----------------------------------------------------------

class _TrialFailed(Exception):
    """Raised inside an objective to mark a trial failed (Optuna catches it)."""


def _optuna():
    try:
        import optuna
    except ImportError:
        raise SweepError("`archspec sweep` needs Optuna: pip install 'archspec[sweep]'") from None
    import warnings

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # archspec reports trials itself
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _storage(url: str, attempts: int = 5):
    """Optuna's RDB storage at ``url``.

    Processes that open a new storage at the same moment (workers started together, or a worker and
    a dashboard) race to create its tables; the loser gets an integrity or "table exists" error
    although the storage is fine a moment later, so opening is retried a few times with a backoff.
    """
    import time

    optuna = _optuna()
    engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=30, grace_period=120,
                                              heartbeat_stale_trial_callback=_requeue)
        except ImportError as exc:
            raise SweepError(f"storage {_safe_url(url)} needs a database driver that is not installed: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises many kinds; say which storage
            racing = type(exc).__name__ in ("IntegrityError", "OperationalError") and attempt + 1 < attempts
            if racing:  # another process is creating the same tables
                time.sleep(0.2 * 2 ** attempt)
                continue
            raise SweepError(f"cannot open the study storage {_safe_url(url)}: {str(exc).splitlines()[0]}") from None


def _safe_url(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return url.split("@")[-1]


def _requeue(study, trial) -> None:
    """A trial whose worker died (stale heartbeat, or a dead local pid): run its parameters again."""
    if trial.user_attrs.get("surplus"):
        return
    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)


def _counted(trials, optuna) -> int:
    """Trials that use up the budget: finished, running or queued, and those that failed on their own
    (an invalid spec, a training error) — not those whose worker was killed."""
    S = optuna.trial.TrialState
    return sum(1 for t in trials if t.state in (S.COMPLETE, S.PRUNED, S.RUNNING, S.WAITING)
               or (t.state == S.FAIL and "error" in t.user_attrs))


_ORPHAN_S = 10.0


def _recover_dead_local(study, optuna, log) -> None:
    """Fail and re-queue RUNNING trials of dead worker processes on this host (a SIGKILLed sweep),
    without waiting for the heartbeat's grace period."""
    import datetime
    import time

    S = optuna.trial.TrialState
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(S.RUNNING,)):
        if "pid" not in t.user_attrs:
            # A worker writes its host and pid right after Optuna creates the trial; a trial still
            # without them a few seconds later lost its worker in between.
            age = (datetime.datetime.now() - t.datetime_start).total_seconds() if t.datetime_start else 60
            if age < _ORPHAN_S:
                time.sleep(_ORPHAN_S - age)
            t = study._storage.get_trial(t._trial_id)
            if t.state != S.RUNNING or "pid" in t.user_attrs:
                continue
        elif t.user_attrs.get("host") != host:
            continue  # another machine's worker: the storage's heartbeat decides
        else:
            try:
                os.kill(int(t.user_attrs["pid"]), 0)
                continue  # still alive: another local worker
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        try:
            failed = study._storage.set_trial_state_values(t._trial_id, S.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker recovered it first
        if failed:
            log(f"trial {t.number} was interrupted (its worker died); its parameters are queued again")
            _requeue(study, t)


class _Pruning(Callback):
    """The training loop's callback for one trial: report each epoch's value, stop when pruned."""

    def __init__(self, trial, metric: str, direction: str):
        self.trial, self.key, self.direction = trial, f"val/{metric}", direction
        self.pruned = False
        self.reason = "pruning"
        self.best = None

    def epoch(self, record: dict) -> bool:
        v = record.get(self.key)
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        self.trial.report(float(v), int(record["epoch"]))
        if self.trial.should_prune():
            self.pruned = True
            self.reason = f"the sweep's pruner ({self.key} = {v:.4g} at epoch {record['epoch']})"
            return True
        return False


def _metric_values(run_dir: Path, metric: str) -> list[float]:
    from .plot import read_metrics

    key = f"val/{metric}"
    return [float(r[key]) for r in read_metrics(run_dir) if isinstance(r.get(key), (int, float))
            and math.isfinite(float(r[key]))]


def best_value(values: list[float], direction: str):
    if not values:
        return None
    return min(values) if direction == "minimize" else max(values)


class Sweep:
    """One sweep directory: its frozen spec and sweep file, its storage and study."""

    def __init__(self, root: Path):
        self.root = Path(root)

    spec_file = property(lambda self: self.root / "spec.yaml")
    sweep_file = property(lambda self: self.root / "sweep.yaml")
    meta_file = property(lambda self: self.root / "sweep.json")
    trials_dir = property(lambda self: self.root / "trials")
    best_spec = property(lambda self: self.root / "best_spec.yaml")

    def meta(self) -> dict:
        if not self.meta_file.is_file():
            raise SweepError(f"{self.root} is not a sweep directory (no sweep.json); start one with "
                             "`archspec sweep SPEC --config SWEEP.yaml --out DIR`")
        try:
            return json.loads(self.meta_file.read_text())
        except ValueError:
            raise SweepError(f"{self.meta_file} is corrupt") from None


def _setup(spec_path, config, out, resume, storage, log):
    """Create (or join, or resume) a sweep directory; returns ``(sweep, cfg, smap, raw, checked, meta)``."""
    from .checkpoint import atomic_write_bytes, atomic_write_json
    from .load import load_text
    from .pipeline import check_file

    if resume is not None:
        sw = Sweep(Path(resume))
        meta = sw.meta()
        cfg, _, smap = load_sweep(sw.sweep_file)
        base_dir = Path(meta["base_dir"])
        from .pipeline import check_text

        checked = check_text(sw.spec_file.read_text(), str(sw.spec_file), base_dir=base_dir).raise_for_errors()
        if storage is None and "***" in meta["storage"]:
            raise SweepError("this sweep's storage URL has a password, which is not stored: give it again with "
                             "--storage URL")
        meta["storage"] = storage or meta["storage"]
    else:
        cfg, _, smap = load_sweep(config)
        checked = check_file(spec_path).raise_for_errors()
        sw = Sweep(Path(out) if out else Path("sweeps") / (cfg.name or checked.spec.name))
        spec_bytes, sweep_bytes = Path(spec_path).read_bytes(), Path(config).read_bytes()
        if sw.meta_file.is_file():  # join the sweep (a second worker) if it is the same one
            if sw.spec_file.read_bytes() != spec_bytes or sw.sweep_file.read_bytes() != sweep_bytes:
                raise SweepError(f"{sw.root} holds another sweep (its spec or sweep file differs); resume it "
                                 f"with `archspec sweep --resume {sw.root}` or choose another --out")
            meta = sw.meta()
            meta["storage"] = storage or meta["storage"]
        else:
            sw.root.mkdir(parents=True, exist_ok=True)
            url = storage or f"sqlite:///{(sw.root / 'study.db').resolve()}"
            meta = {"spec": str(Path(spec_path).resolve()), "config": str(Path(config).resolve()),
                    "base_dir": str(checked.base_dir), "storage": url,
                    "study": cfg.name or checked.spec.name}
            atomic_write_bytes(sw.spec_file, spec_bytes)
            atomic_write_bytes(sw.sweep_file, sweep_bytes)
            atomic_write_json(sw.meta_file, {**meta, "storage": _safe_url(url)})
        # diagnostics point at the user's own sweep file
        cfg, _, smap = load_sweep(config)
    diags = check_sweep(cfg, smap, checked)
    if any(d.severity == ERROR for d in diags):
        raise SpecError(diags)
    raw, _ = load_text(sw.spec_file.read_text(), str(sw.spec_file))
    return sw, cfg, smap, raw, checked, meta


def _grid(cfg: SweepConfig) -> dict:
    space = {}
    for path, d in cfg.params.items():
        if isinstance(d, CategoricalParam):
            space[path] = [json.dumps(c) for c in d.choices]
        elif isinstance(d, IntParam):
            space[path] = list(range(d.low, d.high + 1, d.step))
        else:
            n = int(math.floor((d.high - d.low) / d.step + 1e-9))
            space[path] = [d.low + k * d.step for k in range(n + 1)]
    return space


def grid_size(cfg: SweepConfig) -> int:
    return math.prod(len(v) for v in _grid(cfg).values())


def _make_sampler(cfg: SweepConfig, optuna):
    s = cfg.sampler
    if isinstance(s, RandomSampler):
        return optuna.samplers.RandomSampler(seed=s.seed)
    if isinstance(s, GridSampler):
        return optuna.samplers.GridSampler(_grid(cfg), seed=s.seed)
    return optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=s.startup_trials)


def _make_pruner(cfg: SweepConfig, optuna):
    p = cfg.pruner
    if isinstance(p, MedianPruner):
        return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_epochs)
    if isinstance(p, SuccessiveHalvingPruner):
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=p.min_epochs, reduction_factor=p.reduction_factor)
    return optuna.pruners.NopPruner()


def _suggest(trial, path: str, d):
    if isinstance(d, CategoricalParam):
        return json.loads(trial.suggest_categorical(path, [json.dumps(c) for c in d.choices]))
    if isinstance(d, IntParam):
        return trial.suggest_int(path, d.low, d.high, step=d.step, log=d.log)
    if isinstance(d, LogUniformParam):
        return trial.suggest_float(path, d.low, d.high, log=True)
    return trial.suggest_float(path, d.low, d.high, step=d.step)


def trial_spec_text(raw: dict, params: dict, base_dir: Path, header: str = "", defaults=None) -> str:
    """The YAML of the base spec with ``params`` written in and its data paths made absolute."""
    data = copy.deepcopy(raw)
    for path, v in params.items():
        set_path(data, path, v, defaults)
    absolutize_paths(data, Path(base_dir))
    return header + _dump(data)


def _locate_trial_errors(errors, params: dict, smap) -> Diagnostic:
    """One diagnostic at the sweep file's line of the parameter that broke the spec (the one whose
    path is closest to the first error), naming the values drawn."""
    first = errors[0]
    best, score = None, -1
    for path in params:
        parts = tuple(str(p) for p in split_path(path))
        dpath = tuple(str(p) for p in first.path)
        n = 0
        while n < min(len(parts), len(dpath)) and parts[n] == dpath[n]:
            n += 1
        if n > score:
            best, score = path, n
    line, col = smap.locate(("params", best), key=True) if best else smap.locate(("params",), key=True)
    drawn = ", ".join(f"{k}={json.dumps(v)}" for k, v in params.items())
    return Diagnostic("E-SWEEP-TRIAL", ERROR, ("params", best) if best else ("params",),
                      f"the drawn values ({drawn}) make the spec invalid: {first.render()}"
                      + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""),
                      "narrow this parameter's range or choices", smap.file, line, col)


def run_sweep(spec_path=None, config=None, *, out=None, resume=None, storage=None, track=None,
              tracking_uri=None, log=print) -> Path:
    """Run (or join, or resume) a sweep until the study has its number of trials.

    Args:
        spec_path / config: the base spec and the sweep file (not with ``resume``).
        out: sweep directory (default ``sweeps/<name>``). An existing directory with the same spec and
            sweep file is joined: that is how a second worker on this machine takes part.
        resume: a sweep directory to continue.
        storage: SQLAlchemy URL of the study storage (default ``sqlite:///DIR/study.db``).
        track: tracking backends for the trials (``["mlflow"]``...); each trial is a nested MLflow run.

    Returns:
        the sweep directory.

    Raises:
        SpecError (the spec or the sweep file), SweepError.
    """
    optuna = _optuna()
    sw, cfg, smap, raw, checked, meta = _setup(spec_path, config, out, resume, storage, log)
    defaults = _resolved(checked)
    for d in preview_params(cfg, smap, raw, str(sw.spec_file), Path(meta["base_dir"]), defaults):
        log(d.render())
    direction = cfg.resolved_direction()
    st = _storage(meta["storage"])
    try:
        study = optuna.create_study(study_name=meta["study"], storage=st, direction=direction,
                                    sampler=_make_sampler(cfg, optuna), pruner=_make_pruner(cfg, optuna),
                                    load_if_exists=True)
    except Exception as exc:  # noqa: BLE001
        raise SweepError(f"cannot create or load study '{meta['study']}' in {_safe_url(meta['storage'])}: "
                         f"{str(exc).splitlines()[0]}") from None
    if study.direction.name.lower() != direction:
        raise SweepError(f"study '{meta['study']}' in this storage {study.direction.name.lower()}s; this sweep file "
                         f"asks to {direction}: use another `name:` for a new study")
    study.set_metric_names([cfg.metric])
    if cfg.first_trials and not study.get_trials(deepcopy=False):
        for first in cfg.first_trials:
            study.enqueue_trial({k: _encode(cfg.params[k], v) for k, v in first.items()}, skip_if_exists=True)
    _recover_dead_local(study, optuna, log)
    parent = _mlflow_parent(study, sw, cfg, track, tracking_uri, meta)
    n_total = cfg.trials
    if isinstance(cfg.sampler, GridSampler):
        n_total = min(n_total, grid_size(cfg))
    base_dir = Path(meta["base_dir"])
    sw.trials_dir.mkdir(parents=True, exist_ok=True)

    S = optuna.trial.TrialState

    def objective(trial):
        if _counted([t for t in study.get_trials(deepcopy=False) if t.number < trial.number], optuna) >= n_total:
            trial.set_user_attr("surplus", True)  # another worker took the last trial meanwhile
            raise _TrialFailed("surplus")
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        params = {path: _suggest(trial, path, d) for path, d in cfg.params.items()}
        run_dir = sw.trials_dir / f"{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        drawn = ", ".join(f"{k}={json.dumps(v)}" for k, v in params.items())
        log(f"trial {trial.number}: {drawn}")
        text = trial_spec_text(raw, params, base_dir, defaults=defaults)
        from .pipeline import check_text

        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "spec.yaml").write_text(text)  # kept for an invalid trial too: its diagnostics point here
        res = check_text(text, str(run_dir / "spec.yaml"), base_dir=base_dir)
        if res.errors:
            d = _locate_trial_errors(res.errors, params, smap)
            log(d.render())
            trial.set_user_attr("error", d.render())
            raise _TrialFailed(d.message)
        pruning = _Pruning(trial, cfg.metric, direction)
        from .train import fit

        tr = {"callbacks": [pruning], "run_name": f"trial-{trial.number:04d}"}
        if track:
            tr.update(backends=track, parent=parent, uri=(parent or {}).get("uri") or tracking_uri)
        try:
            fit(str(run_dir / "spec.yaml"), out=str(run_dir), progress=False, track=tr,
                log=lambda *a, **k: log(f"  [trial {trial.number}]", *a, **k))
        except KeyboardInterrupt:  # Ctrl-C: this trial fails uncounted; its parameters run first on resume
            from .tracking import abort_active

            abort_active("KILLED")
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            raise
        except ArchspecError as exc:
            from .tracking import abort_active

            abort_active("FAILED")
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            log(f"trial {trial.number} failed: {exc}")
            from .errors import DataError

            if isinstance(exc, DataError) and not study.get_trials(deepcopy=False, states=(S.COMPLETE,)):
                raise  # the data is wrong for every trial: stop the sweep (exit 3) instead of failing them all
            raise _TrialFailed(str(exc)) from None
        values = _metric_values(run_dir, cfg.metric)
        value = best_value(values, direction)
        trial.set_user_attr("epochs", len(_metric_values(run_dir, cfg.metric)))
        if pruning.pruned:
            log(f"trial {trial.number} pruned after epoch {len(values)}")
            raise optuna.TrialPruned()
        if value is None:
            msg = f"the run reported no finite value of val/{cfg.metric}"
            trial.set_user_attr("error", msg)
            raise _TrialFailed(msg)
        log(f"trial {trial.number}: {cfg.metric} = {value:.6g}")
        return value

    while _counted([t for t in study.get_trials(deepcopy=False) if t.state != S.WAITING], optuna) < n_total:
        study.optimize(objective, n_trials=1, catch=(_TrialFailed,), gc_after_trial=False)
    _finish_parent(parent)
    log(show_sweep(sw.root, storage=meta["storage"], write=True))
    return sw.root


def _mlflow_parent(study, sw: Sweep, cfg, track, uri, meta):
    """The sweep's own MLflow run (shared by its workers through the study's attributes)."""
    if not track or "mlflow" not in track:
        return None
    import logging

    from mlflow.tracking import MlflowClient

    from .tracking import default_mlflow_uri, experiment_id

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = uri or study.user_attrs.get("mlflow_uri") or default_mlflow_uri(sw.root)
    client = MlflowClient(tracking_uri=uri)
    run_id = study.user_attrs.get("mlflow_run_id") if study.user_attrs.get("mlflow_uri") == uri else None
    if run_id is None:
        exp = experiment_id(client, meta["study"], sw.root)
        run = client.create_run(exp, run_name=f"sweep-{meta['study']}",
                                tags={"archspec.sweep_dir": str(sw.root.resolve())})
        run_id = run.info.run_id
        client.log_dict(run_id, cfg.model_dump(mode="json"), "sweep.json")
        study.set_user_attr("mlflow_run_id", run_id)
        study.set_user_attr("mlflow_uri", uri)
    else:
        exp = client.get_run(run_id).info.experiment_id
        client.update_run(run_id, status="RUNNING")
    return {"uri": uri, "run_id": run_id, "experiment_id": exp, "client": client, "metric": cfg.metric,
            "study": study}


def _finish_parent(parent) -> None:
    if not parent:
        return
    study, client = parent["study"], parent["client"]
    try:
        best = study.best_trial
        client.log_metric(parent["run_id"], f"best/{parent['metric']}", best.value, step=best.number)
        client.set_tag(parent["run_id"], "best_trial", str(best.number))
    except ValueError:
        pass
    client.set_terminated(parent["run_id"], "FINISHED")


# --- showing a sweep --------------------------------------------------------------------------

def show_sweep(root, *, storage: str | None = None, write: bool = True) -> str:
    """The trials table of a sweep directory and its best trial; writes ``best_spec.yaml``.

    Raises:
        SweepError: not a sweep directory, or its storage cannot be read.
    """
    optuna = _optuna()
    sw = Sweep(Path(root))
    meta = sw.meta()
    url = storage or meta["storage"]
    if "***" in url:
        raise SweepError("this sweep's storage URL has a password, which is not stored: give it with --storage URL")
    cfg, _, _ = load_sweep(sw.sweep_file)
    try:
        study = optuna.load_study(study_name=meta["study"], storage=_storage(url))
    except KeyError:
        raise SweepError(f"no study '{meta['study']}' in {_safe_url(url)}") from None
    trials = study.get_trials(deepcopy=False)
    names = list(cfg.params)
    rows = [["trial", "state", cfg.metric, "epochs", "time_s", *names]]
    for t in trials:
        if t.user_attrs.get("surplus"):
            continue
        state = t.state.name.lower()
        if t.state.name == "FAIL" and "error" not in t.user_attrs:
            state = "interrupted"
        dur = f"{t.duration.total_seconds():.1f}" if t.duration else ""
        val = f"{t.value:.6g}" if t.value is not None else (
            f"{t.intermediate_values[max(t.intermediate_values)]:.6g}*" if t.intermediate_values else "")
        rows.append([str(t.number), state, val, str(t.user_attrs.get("epochs", "")), dur,
                     *[_short(t.params.get(n)) for n in names]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"sweep {sw.root} — study '{meta['study']}' ({study.direction.name.lower()} {cfg.metric}), "
             f"storage {_safe_url(url)}"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    counts = {}
    for t in trials:
        if not t.user_attrs.get("surplus"):
            counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    lines.append(", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + " (* = last value of a pruned trial)"
                 if any(t.state.name == "PRUNED" for t in trials) else ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    for t in trials:
        if t.state.name == "FAIL" and "error" in t.user_attrs:
            lines.append(f"trial {t.number} failed: {t.user_attrs['error']}")
    try:
        best = study.best_trial
    except ValueError:
        lines.append("no finished trial yet")
        return "\n".join(lines)
    params = {k: _param_value(cfg.params[k], v) for k, v in best.params.items() if k in cfg.params}
    lines.append(f"best: trial {best.number}, {cfg.metric} = {best.value:.6g}; "
                 + ", ".join(f"{k}={json.dumps(v)}" for k, v in params.items()))
    if write:
        from .load import load_text

        from .pipeline import check_text

        raw, _ = load_text(sw.spec_file.read_text(), str(sw.spec_file))
        base = check_text(sw.spec_file.read_text(), str(sw.spec_file), base_dir=Path(meta["base_dir"]))
        header = (f"# best trial {best.number} of sweep {sw.root} ({cfg.metric} = {best.value:.6g})\n"
                  f"# parameters: {json.dumps(params)}\n")
        from .checkpoint import atomic_write_bytes

        atomic_write_bytes(sw.best_spec, trial_spec_text(raw, params, Path(meta["base_dir"]), header,
                                                         defaults=_resolved(base) if base.spec else None).encode())
        lines.append(f"best spec: {sw.best_spec}   (trial run: {best.user_attrs.get('run_dir', '')})")
    return "\n".join(lines)


def _param_value(dist, v):
    return json.loads(v) if isinstance(dist, CategoricalParam) else v


def _short(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
