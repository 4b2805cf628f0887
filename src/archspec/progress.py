"""Training progress: a live ``rich`` bar on a terminal, plain lines for logs and CI, and the final
summary naming the best epoch (the weights ``evaluate`` and ``predict`` use by default)."""

from __future__ import annotations

import json
import math


class Progress:
    """Per-epoch progress of the training loop.

    Args:
        enabled: draw a live bar (``rich``: batches done, rate, ETA, running loss and learning
            rate). Off, nothing is drawn during an epoch: each epoch ends with one plain line,
            which is all a log file or CI needs.
        log: where lines go (``print`` on the main process).
    """

    def __init__(self, enabled: bool, log=print):
        self.enabled = enabled
        self.log = log
        self.epochs = 0
        self._bar = None
        self._task = None

    def start_epoch(self, epoch: int, epochs: int, batches: int) -> None:
        self.epoch, self.epochs = epoch, epochs
        if not self.enabled:
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self._bar = Bar(TextColumn(f"epoch {epoch}/{epochs}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                        TimeRemainingColumn(), TextColumn("{task.fields[stats]}"))
        self._task = self._bar.add_task("train", total=batches, rate="", stats="")
        self._bar.start()

    def update(self, done: int, **vals) -> None:
        """``done`` batches of this epoch are finished; ``vals`` (loss, lr) are shown next to the bar."""
        if self._bar is None:
            return
        task = self._bar.tasks[0]
        speed = task.speed
        stats = " ".join(f"{k} {v:.4g}" for k, v in vals.items())
        self._bar.update(self._task, completed=done, stats=stats,
                         rate=f"{speed:.1f} batch/s" if speed else "")

    def end_epoch(self, record: dict) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        shown = {k: v for k, v in record.items() if k == "train_loss" or k.startswith("val/")}
        text = "  ".join(f"{k.removeprefix('val/')} {v:.4f}" for k, v in shown.items()
                         if isinstance(v, (int, float)))
        self.log(f"epoch {record['epoch']}/{self.epochs} step {record['step']}  {text}")

    def final_table(self, metrics_path, best: dict | None = None, metric: str = "loss", mode: str = "min") -> None:
        """The validation metrics of the best epoch, saying which epoch it is and why.

        Args:
            metrics_path: the run's ``metrics.jsonl``.
            best: the ``best`` checkpoint pointer (its ``step`` finds the epoch).
            metric: what chooses ``best`` (``training.early_stopping.metric``, else ``loss``).
            mode: ``min`` or ``max``: whether lower or higher is better.
        """
        try:
            lines = [json.loads(x) for x in open(metrics_path, encoding="utf-8") if x.strip()]
        except (OSError, ValueError):
            return
        if not lines:
            return
        last = lines[-1]
        chosen = next((r for r in reversed(lines) if best and r.get("step") == best.get("step")), None)
        value = chosen.get(f"val/{metric}") if chosen else None
        if chosen is not None and isinstance(value, (int, float)) and not math.isnan(value):
            better = "lowest" if mode == "min" else "highest"
            self.log(f"\nbest epoch: {chosen['epoch']} (step {chosen['step']}) — {better} validation {metric}, "
                     f"{value:.4f}; evaluate and predict use it (--checkpoint last for epoch {last['epoch']})"
                     if chosen is not last else
                     f"\nbest epoch: {chosen['epoch']} (step {chosen['step']}), the last — {better} validation "
                     f"{metric}, {value:.4f}; evaluate and predict use it")
        else:
            chosen = last
            self.log(f"\nno validation {metric} to choose the best epoch: evaluate and predict use the last "
                     f"checkpoint (epoch {last['epoch']}, step {last['step']})")
        rows = [(k.removeprefix("val/"), v) for k, v in chosen.items() if k.startswith("val/")]
        if not rows:
            return
        w = max(len(k) for k, _ in rows)
        self.log(f"validation metrics of epoch {chosen['epoch']}:")
        for k, v in rows:
            self.log(f"  {k:<{w}}  {v:.4f}")
