"""Stage 7: training. One loop that reads top to bottom (nanoGPT's train.py).

setup → for each step: fetch → forward → loss → backward → clip → step → log → (evaluate,
checkpoint at epoch ends) → final table. Runs resume exactly from their last checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import checkpoint as ckpt
from .build import compile_loss, compile_spec
from .errors import CheckpointError, TrainingError, UsageError
from .loss_weighting import make_weighting
from .optim import lr_at, make_optimizer
from .pipeline import Checked, check_file, check_text
from .baselines import baseline_inputs, collect_inputs
from .outputs import evaluate_outputs, run_model
from .progress import Progress


@dataclass
class RunPaths:
    root: Path

    @property
    def spec(self) -> Path:
        return self.root / "spec.yaml"

    @property
    def resolved(self) -> Path:
        return self.root / "resolved_spec.json"

    @property
    def preprocess(self) -> Path:
        return self.root / "preprocess"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"


def resolved_spec(checked: Checked) -> dict:
    """The spec with every default filled in (what the run actually used)."""
    return checked.spec.model_dump(mode="json", by_alias=True)


def spec_changes(old: dict, new: dict, path: str = "") -> list[str]:
    """Human-readable differences between two resolved specs."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            p = f"{path}.{k}" if path else str(k)
            if k not in old:
                out.append(f"{p}: added")
            elif k not in new:
                out.append(f"{p}: removed")
            else:
                out += spec_changes(old[k], new[k], p)
        return out
    return [] if old == new else [f"{path}: {json.dumps(old)} → {json.dumps(new)}"]


class _StopFlag:
    """SIGINT/SIGTERM ask the loop to stop at the next step boundary (and save)."""

    def __init__(self):
        self.signal = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # only the main thread may install handlers
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _dist():
    """``(rank, world_size)``; initialises torch.distributed when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def _device(rank: int) -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local % torch.cuda.device_count())
        return torch.device("cuda", local % torch.cuda.device_count())
    return torch.device("cpu")


def _autocast(cfg, device):
    if device.type == "cuda" and cfg.mixed_precision != "off":
        dtype = torch.float16 if cfg.mixed_precision == "fp16" else torch.bfloat16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


def _nonfinite_head(per_head: dict) -> str:
    bad = [k for k, v in per_head.items() if not torch.isfinite(v).all()]
    return ", ".join(bad) or "(total)"


@dataclass
class TrainResult:
    """What :func:`fit` gives back: the run directory and the trained model (every rank has one)."""

    run_dir: Path
    model: torch.nn.Module
    steps: int


def train(spec_path=None, **kwargs) -> Path:
    """Train a spec and write a run directory; returns the directory (see :func:`fit`)."""
    return fit(spec_path, **kwargs).run_dir


def fit(spec_path=None, *, data: str | None = None, out: str | None = None, resume: str | None = None,
        max_steps: int | None = None, epochs: int | None = None, progress: bool | None = None,
        plot: bool = False, log=print, track: dict | None = None, init_from: str | None = None) -> TrainResult:
    """Train a spec and write a run directory.

    Args:
        spec_path: the spec file (optional with ``resume``: the run's own spec is used).
        data: training data file, overriding ``training.data.train``.
        out: run directory (default ``runs/<name>``; must not hold another run unless resuming).
        resume: a run directory to continue from its last checkpoint.
        max_steps / epochs: override the spec (e.g. for quick checks).
        progress: live progress bar; default: when stdout is a terminal.
        track: options of :func:`archspec.tracking.start_tracking` (backends, uri, callbacks, ...).
        init_from: a finished run whose weights start this one, matched by node name (the second
            stage of transfer learning: unfreeze, then fine-tune; see :mod:`archspec.warm_start`).

    Returns:
        a :class:`TrainResult`.

    Raises:
        SpecError, DataError, CheckpointError, TrainingError; KeyboardInterrupt after a
        SIGINT/SIGTERM stop (the last checkpoint is saved first).
    """
    from .data import Loader, Preprocessor, default_workers, fit_table, open_table, preflight_table, split_positions

    for option, value in (("epochs", epochs), ("max_steps", max_steps)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise UsageError(f"{option} must be a whole number ≥ 1, not {value!r}")
    rank, world = _dist()
    is_main = rank == 0
    say = log if is_main else (lambda *a, **k: None)

    # --- setup: spec, run directory -----------------------------------------------------------
    if resume is not None:
        run = RunPaths(Path(resume))
        if not run.resolved.is_file():
            raise CheckpointError(f"{resume} is not a run directory (no resolved_spec.json)")
        stored = json.loads(run.resolved.read_text())
        if spec_path is not None:
            checked = check_file(spec_path).raise_for_errors()
            changes = spec_changes(stored, resolved_spec(checked))
            if changes:
                raise CheckpointError("refusing to resume: the spec changed since this run started:\n  "
                                      + "\n  ".join(changes[:20]) + "\nstart a new run (--out) or undo the changes")
        checked = check_text(run.spec.read_text(), str(run.spec), base_dir=_stored_base(run)).raise_for_errors()
        source = _source(run)
        data = data or source.get("data")  # the run keeps the data and overrides it started with
        epochs = epochs if epochs is not None else source.get("epochs")
        max_steps = max_steps if max_steps is not None else source.get("max_steps")
    else:
        checked = check_file(spec_path).raise_for_errors()
        name = checked.spec.name
        run = RunPaths(Path(out) if out else Path("runs") / name)
        if (run.checkpoints / "last.json").exists():
            raise CheckpointError(f"{run.root} already holds a run; resume it with --resume {run.root} "
                                  "or choose another --out")
        if is_main:
            run.root.mkdir(parents=True, exist_ok=True)
            ckpt.atomic_write_bytes(run.spec, Path(spec_path).read_bytes())
            ckpt.atomic_write_json(run.resolved, resolved_spec(checked))
            ckpt.atomic_write_json(run.root / "source.json", {
                "spec": str(Path(spec_path).resolve()), "base_dir": str(checked.base_dir),
                "data": str(Path(data).resolve()) if data else None, "epochs": epochs, "max_steps": max_steps})
            run.metrics.unlink(missing_ok=True)
    spec, tcfg = checked.spec, checked.spec.training
    total_epochs = epochs if epochs is not None else tcfg.epochs
    step_cap = max_steps if max_steps is not None else tcfg.max_steps

    # --- data: open lazily, check (streaming), split, fit preprocessing on the training split only
    train_file = data or _data_path(checked, tcfg.data.train, "train")
    table = open_table(train_file)  # memory-mapped; converted once into the cache
    if tcfg.data.validation and not data:
        val_table = open_table(_data_path(checked, tcfg.data.validation, "validation"))
        train_rows, val_rows = np.arange(table.num_rows), np.arange(val_table.num_rows)
    else:
        val_table = table
        train_rows, val_rows = split_positions(table.num_rows, tcfg.validation_split, tcfg.seed, file=train_file)
    preflight_table(checked, table, train_rows, "train", on_bad_row=tcfg.on_bad_row, log=say)
    if len(val_rows):
        preflight_table(checked, val_table, val_rows, "validation", on_bad_row=tcfg.on_bad_row,
                        bad_lines=val_table is not table, log=say)
    if resume is not None:
        pre = Preprocessor.load(run.preprocess, checked)
    else:
        pre = fit_table(checked, table, train_rows, fit_rows=tcfg.fit_rows, seed=tcfg.seed)
        if is_main:
            pre.save(run.preprocess)
    device = _device(rank)
    workers = default_workers(checked)
    per_rank = tcfg.batch_size // world
    if per_rank * world != tcfg.batch_size:
        raise TrainingError(f"batch_size {tcfg.batch_size} is not divisible by {world} processes")
    loader_args = dict(num_workers=workers, pin_memory=device.type == "cuda", on_bad_row=tcfg.on_bad_row)
    train_loader = Loader(table, pre, train_rows, batch_size=tcfg.batch_size, shuffle=True, seed=tcfg.seed,
                          rank=rank, world_size=world, name="train", **loader_args)
    # every rank evaluates the whole validation split (the metrics decide early stopping on all ranks)
    val_loader = Loader(val_table, pre, val_rows, batch_size=max(tcfg.batch_size, 256), rank=0, world_size=1,
                        name="validation", **loader_args) if len(val_rows) else None

    from .members import with_members  # heads of other runs (`type: run`): their outputs join the batches

    train_loader = with_members(checked, pre, train_loader, table, say)
    val_loader = with_members(checked, pre, val_loader, val_table, say)

    # --- model, loss, optimizer --------------------------------------------------------------
    model = compile_spec(checked, preprocessor=pre).to(device)
    if init_from is not None and resume is None:
        from .warm_start import warm_start

        warm_start(model, init_from, say)
    if is_main and resume is None:
        from .warm_start import save_pretrained_configs

        save_pretrained_configs(model, run.root)  # the run rebuilds its encoders without the model cache
    if is_main and resume is None:
        from .baselines import fit_baseline

        ckpt.atomic_write_json(run.root / "baseline.json", fit_baseline(model, table, pre, train_rows, tcfg))
    loss_fn = compile_loss(model)
    loss_inputs = baseline_inputs(model)  # what contrastive losses read besides outputs (candidate keys)
    if loss_fn.needs_fit:  # contrastive heads: candidate frequencies (logQ) and random negatives
        loss_fn.fit(collect_inputs(table, pre, train_rows, loss_inputs, tcfg.on_bad_row))

    from .gbdt import fit_or_load_heads

    fit_or_load_heads(model, run.root, resume is not None, table, val_table, pre, train_rows, val_rows,
                      tcfg, loader_args, say)
    if not any(p.requires_grad for p in model.parameters()):
        return _nothing_to_train(model, run, val_loader, loss_fn, say)
    ddp_model = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=False)
    opt = make_optimizer(tcfg.optimizer, model.parameters())
    weighting = make_weighting(tcfg.loss_weighting, model, loss_fn, world)  # see loss_weighting.py
    if weighting.parameters():  # learned log-variances train with the model, without weight decay
        opt.add_param_group({"params": weighting.parameters(), "weight_decay": 0.0})
    n = len(train_rows)
    batches_per_epoch = train_loader.batches()
    steps_per_epoch = math.ceil(batches_per_epoch / tcfg.grad_accumulation)
    total_steps = steps_per_epoch * total_epochs
    if step_cap:
        total_steps = min(total_steps, step_cap)

    # --- resume state ----------------------------------------------------------------------
    step, epoch, start_batch = 0, 0, 0
    best, bad_epochs, skipped = None, 0, 0
    if resume is not None and ckpt.read_pointer(run.checkpoints, "last", missing_ok=True):
        weights, optim_sd, meta = ckpt.load_state(run.checkpoints, "last")
        model.load_state_dict(weights)
        opt.load_state_dict(optim_sd)
        weighting.load_state_dict(meta.get("extra", {}).get("loss_weighting"))
        pos = meta["position"]
        step, epoch, start_batch = pos["step"], pos["epoch"], pos["batch"]
        best, bad_epochs, skipped = pos.get("best"), pos.get("bad_epochs", 0), pos.get("skipped", 0)
        ckpt.restore_rng(meta["rng_tensors"], meta["rng"])
        say(f"resumed {run.root} at epoch {epoch + 1}, step {step}")
    else:
        torch.manual_seed(tcfg.seed)
        # numpy's global generator too: transformers' SpecAugment (wav2vec2's time masks) draws from it
        np.random.seed(tcfg.seed % 2 ** 32)
    if is_main:
        ckpt.prune(run.checkpoints) if run.checkpoints.exists() else None

    es = tcfg.early_stopping
    es_mode = None
    if es is not None:
        es_mode = es.mode if es.mode != "auto" else ("min" if es.metric.endswith(("loss", "mae", "rmse", "mse"))
                                                     else "max")
    from .tracking import start_tracking

    tracker = start_tracking(checked, run.root, resume=resume is not None, enabled=is_main, **(track or {}))
    show = Progress(enabled=(sys.stdout.isatty() if progress is None else progress) and is_main, log=say)
    say(f"training {spec.name}: {n} rows, {batches_per_epoch} batches/epoch, {total_steps} steps, "
        f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable parameters, "
        f"device {device}, {workers} data worker{'s' if workers != 1 else ''}"
        + (f", {world} processes" if world > 1 else ""))

    # --- the loop ------------------------------------------------------------------------------
    def save(pointers=("last",)):
        if is_main:
            ckpt.save_checkpoint(run.checkpoints, step, model, opt, {
                "step": step, "epoch": epoch, "batch": start_batch, "best": best,
                "bad_epochs": bad_epochs, "skipped": skipped}, pointers,
                extra={"loss_weighting": weighting.state_dict()})

    stopped_by = None
    lr = tcfg.optimizer.lr
    running, loss_value, per_head = 0.0, 0.0, {}
    t0 = time.time()
    with _StopFlag() as stop, contextlib.ExitStack() as workers_alive:
        workers_alive.callback(train_loader.close)
        if val_loader is not None:
            workers_alive.callback(val_loader.close)
        while epoch < total_epochs and step < total_steps:
            model.train()
            show.start_epoch(epoch + 1, total_epochs, batches_per_epoch)
            running = 0.0
            opt.zero_grad(set_to_none=True)
            first = start_batch
            # the sampler resumes at `start_batch`: the batches before it are never read
            for b, (inputs, targets, rows) in enumerate(train_loader.epoch(epoch, first), start=first):
                lr = lr_at(step, tcfg.optimizer.lr, total_steps, tcfg.schedule)
                for group in opt.param_groups:
                    group["lr"] = lr
                if len(rows):  # a batch whose every row was skipped (on_bad_row: skip) adds nothing
                    inputs = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
                    targets = {k: v.to(device, non_blocking=True) for k, v in targets.items()}
                    with _autocast(tcfg, device):
                        outputs = ddp_model(inputs)
                        total, per_head = weighting(outputs, targets, inputs, train=True)
                    if not torch.isfinite(total):
                        if tcfg.on_nonfinite == "error":
                            raise TrainingError(f"non-finite loss at epoch {epoch + 1}, step {step}: head "
                                                f"{_nonfinite_head(per_head)} — check the data for extreme values, "
                                                "lower the learning rate, or set `on_nonfinite: skip`")
                        skipped += 1
                        opt.zero_grad(set_to_none=True)
                        weighting.discard()
                        start_batch = b + 1
                        continue
                    # mean over the micro-batches of this optimizer step (the last group may be short)
                    group = min(tcfg.grad_accumulation,
                                batches_per_epoch - b // tcfg.grad_accumulation * tcfg.grad_accumulation)
                    (total / group).backward()
                    loss_value = float(total.detach())
                    running = 0.9 * running + 0.1 * loss_value if running else loss_value
                last_of_epoch = b == batches_per_epoch - 1
                if (b + 1) % tcfg.grad_accumulation == 0 or last_of_epoch:
                    if tcfg.grad_clip:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    weighting.step()
                    step += 1
                    start_batch = b + 1
                    show.update(b + 1, loss=running, lr=lr)
                    tracker.step(step, loss_value, lr, per_head)
                    if tcfg.checkpoint_every and step % tcfg.checkpoint_every == 0 and b + 1 < batches_per_epoch:
                        save()
                    if stop.signal is not None or step >= total_steps:
                        break
            if stop.signal is not None and start_batch < batches_per_epoch:
                stopped_by = signal.Signals(stop.signal).name
                save()
                break
            # --- end of epoch: evaluate, log, checkpoint, early stopping -------------------------
            metrics = {}
            if val_loader is not None:
                val_out, val_y, val_x = run_model(model, val_loader, device, keep_inputs=loss_inputs)
                metrics = evaluate_outputs(model, val_out, val_y, loss_fn, val_x) if val_out else {}
            record = {"epoch": epoch + 1, "step": step, "train_loss": running, "lr": lr,
                      "time_s": round(time.time() - t0, 3), "skipped_steps": skipped, **weighting.log(),
                      **({"skipped_rows": train_loader.skipped} if tcfg.on_bad_row == "skip" else {}),
                      **{f"val/{k}": v for k, v in metrics.items()}}
            if is_main:
                with open(run.metrics, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record) + "\n")
            show.end_epoch(record)
            improved = False
            key = None if es is None else ("loss" if es.metric == "loss" else es.metric)
            current = metrics.get(key) if key else metrics.get("loss")
            if current is not None and not (isinstance(current, float) and math.isnan(current)):
                mode = es_mode or "min"
                improved = best is None or (current < best - (es.min_delta if es else 0) if mode == "min"
                                            else current > best + (es.min_delta if es else 0))
            if start_batch >= batches_per_epoch:  # the epoch is complete (not cut short by max_steps)
                weighting.end_epoch()
                epoch += 1
                start_batch = 0
            if improved:
                best, bad_epochs = current, 0
            else:
                bad_epochs += 1
            save(("last", "best") if improved or best is None else ("last",))
            if tracker.epoch(record):
                say(f"stopped by {tracker.stop_reason} after epoch {record['epoch']}")
                break
            if es is not None and bad_epochs >= es.patience:
                say(f"early stopping: {es.metric} has not improved for {es.patience} epochs")
                break
            if stop.signal is not None:
                stopped_by = signal.Signals(stop.signal).name
                break
    if tcfg.on_bad_row == "skip" and (train_loader.skipped or (val_loader and val_loader.skipped)):
        example = (train_loader.skip_examples or val_loader.skip_examples)[0]
        say(f"skipped {train_loader.skipped} training and {val_loader.skipped if val_loader else 0} validation "
            f"rows with problems (training.on_bad_row: skip), e.g. {example.render(str(train_file))}")
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    if is_main:
        show.final_table(run.metrics, best=ckpt.read_pointer(run.checkpoints, "best", missing_ok=True),
                         metric=es.metric if es is not None else "loss", mode=es_mode or "min")
        if stopped_by:
            say(f"stopped by {stopped_by} at step {step}; resume with: archspec train --resume {run.root}")
        if plot:
            from .plot import plot_run

            say(f"learning curves: {plot_run(run.root)}")
        say(f"run directory: {run.root}")
    tracker.end(run.root, "KILLED" if stopped_by else "FINISHED")
    if stopped_by:
        raise KeyboardInterrupt
    return TrainResult(run.root, model, step)


def _nothing_to_train(model, run: RunPaths, val_loader, loss_fn, say) -> TrainResult:
    """A model without trainable parameters (gbdt heads only, members of other runs with fixed
    weights): evaluate once and write a run that evaluate/predict accept."""
    say("nothing to train: the model has no trainable parameters (its parts are fitted trees or "
        "trained runs, combined with fixed weights); evaluating it once and writing the run")
    metrics = {}
    if val_loader is not None:
        try:
            val_out, val_y = run_model(model, val_loader)[:2]
        finally:
            val_loader.close()
        metrics = evaluate_outputs(model, val_out, val_y, loss_fn) if val_out else {}
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    with open(run.metrics, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"epoch": 0, "step": 0, "train_loss": None, "lr": 0.0, "time_s": 0.0,
                             **{f"val/{k}": v for k, v in metrics.items()}}) + "\n")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(0))], lr=0.0)  # an empty trainer state
    ckpt.save_checkpoint(run.checkpoints, 0, model, opt, {"step": 0, "epoch": 0, "batch": 0, "best": None,
                                                          "bad_epochs": 0, "skipped": 0}, ("last", "best"))
    if metrics:
        say("validation: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
    say(f"run directory: {run.root}")
    return TrainResult(run.root, model, 0)


def _source(run: RunPaths) -> dict:
    src = run.root / "source.json"
    try:
        return json.loads(src.read_text()) if src.is_file() else {}
    except ValueError:
        raise CheckpointError(f"{src} is corrupt") from None


def _stored_base(run: RunPaths):
    base = _source(run).get("base_dir")
    return Path(base) if base else run.root


def _data_path(checked: Checked, path: str | None, which: str) -> str:
    from .errors import DataError

    if not path:
        raise DataError(f"no {which} data: give --data FILE or set training.data.{which} in the spec")
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = (checked.base_dir or Path.cwd()) / p
    if not p.is_file():
        raise DataError(f"{which} data file not found: {p} — prepare it (see docs/data.md) or give --data FILE")
    return str(p)
