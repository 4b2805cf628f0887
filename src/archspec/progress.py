"""Progress display: a live bar on a terminal, plain lines otherwise, and a final table."""

from __future__ import annotations

import json
import sys
import time


class Progress:
    def __init__(self, enabled: bool, log=print, width: int = 28):
        self.enabled = enabled
        self.log = log
        self.width = width
        self.total = 0
        self.t0 = time.time()
        self._last = 0.0

    def start_epoch(self, epoch: int, epochs: int, batches: int) -> None:
        self.epoch, self.epochs, self.total = epoch, epochs, batches
        self.t0 = time.time()

    def update(self, done: int, **vals) -> None:
        if not self.enabled:
            return
        now = time.time()
        if now - self._last < 0.1 and done < self.total:
            return
        self._last = now
        frac = done / max(self.total, 1)
        bar = "█" * int(frac * self.width) + "·" * (self.width - int(frac * self.width))
        stats = " ".join(f"{k} {v:.4g}" for k, v in vals.items())
        rate = done / max(now - self.t0, 1e-9)
        sys.stdout.write(f"\repoch {self.epoch}/{self.epochs} {bar} {done}/{self.total} {stats} "
                         f"{rate:.1f} batch/s ")
        sys.stdout.flush()

    def end_epoch(self, record: dict) -> None:
        if self.enabled:
            sys.stdout.write("\n")
        shown = {k: v for k, v in record.items() if k == "train_loss" or k.startswith("val/")}
        text = "  ".join(f"{k.removeprefix('val/')} {v:.4f}" for k, v in shown.items()
                         if isinstance(v, (int, float)))
        self.log(f"epoch {record['epoch']}/{self.epochs} step {record['step']}  {text}")

    def final_table(self, metrics_path) -> None:
        try:
            lines = [json.loads(x) for x in open(metrics_path, encoding="utf-8") if x.strip()]
        except OSError:
            return
        if not lines:
            return
        last = lines[-1]
        rows = [(k.removeprefix("val/"), v) for k, v in last.items() if k.startswith("val/")]
        if not rows:
            return
        w = max(len(k) for k, _ in rows)
        self.log(f"\nvalidation metrics after epoch {last['epoch']}:")
        for k, v in rows:
            self.log(f"  {k:<{w}}  {v:.4f}")
