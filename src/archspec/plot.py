"""Learning curves of a run (``metrics.jsonl``) drawn to a PNG with matplotlib."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import CheckpointError


def read_metrics(run_dir) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} has no metrics.jsonl — is it a run directory?")
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise CheckpointError(f"{path}:{i}: not a JSON line") from None
    return rows


def best_epoch(run_dir, rows: list[dict]) -> int | None:
    """The epoch of the run's ``best`` checkpoint (the one ``evaluate``/``predict`` use), if known."""
    try:
        step = json.loads((Path(run_dir) / "checkpoints" / "best.json").read_text()).get("step")
    except (OSError, ValueError, AttributeError):
        return None
    return next((r.get("epoch") for r in reversed(rows) if r.get("step") == step), None)


def plot_run(run_dir, out: str | None = None) -> Path:
    """Draw loss and every validation metric against the epoch, the best epoch marked; returns the
    image path (PNG unless ``out`` ends in .svg or .pdf)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    if not rows:
        raise CheckpointError(f"{run_dir}/metrics.jsonl is empty: train at least one epoch first")
    epochs = [r["epoch"] for r in rows]
    metric_keys = sorted({k for r in rows for k in r if k.startswith("val/") and not k.endswith("loss")})
    weight_keys = sorted({k for r in rows for k in r if k.startswith("weight/")})
    learned = any(len({r.get(k) for r in rows}) > 1 for k in weight_keys)  # fixed weights: no panel
    fig, axes = plt.subplots(1, 3 if learned else 2, figsize=(16 if learned else 11, 4))
    ax1, ax2 = axes[0], axes[1]
    ax1.plot(epochs, [r.get("train_loss") for r in rows], marker="o", label="train loss")
    if any("val/loss" in r for r in rows):
        ax1.plot(epochs, [r.get("val/loss") for r in rows], marker="o", label="validation loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("weighted total loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    for k in metric_keys:
        ax2.plot(epochs, [r.get(k) for r in rows], marker=".", label=k[4:])
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation metric")
    ax2.grid(alpha=0.3)
    if metric_keys:
        ax2.legend(fontsize=7, loc="best")
    if learned:  # effective loss weights per epoch (training.loss_weighting)
        ax3 = axes[2]
        for k in weight_keys:
            ax3.plot(epochs, [r.get(k) for r in rows], marker=".", label=k[len("weight/"):])
        ax3.set_xlabel("epoch")
        ax3.set_ylabel("effective loss weight")
        ax3.grid(alpha=0.3)
        ax3.legend(fontsize=7, loc="best")
    best = best_epoch(run_dir, rows)
    if best is not None:
        for ax in axes:
            ax.axvline(best, color="0.4", linestyle="--", linewidth=1)
        ax1.annotate(f"best (epoch {best})", xy=(best, 1), xycoords=("data", "axes fraction"),
                     xytext=(3, -12), textcoords="offset points", fontsize=8, color="0.3")
    fig.suptitle(Path(run_dir).name)
    fig.tight_layout()
    path = Path(out) if out else Path(run_dir) / "learning_curves.png"
    from .output_paths import writing

    with writing(path):
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
