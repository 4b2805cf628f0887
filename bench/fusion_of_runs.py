"""The seed's late fusion as it writes it, on real data (`movies`): a text transformer and
gradient-boosted trees trained as separate runs, then combined without retraining (0.6 / 0.4 and
a vote). Prints a markdown table of each member and each fusion against the baseline on the test file.

    python bench/fusion_of_runs.py            # full size (the README's numbers)
    python bench/fusion_of_runs.py --quick    # a few steps, to check the pipeline
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few training steps only")
    ap.add_argument("--out", default="runs/fusion_of_runs_bench", help="where the runs go")
    ap.add_argument("--data", default="data", help="data root (prepared if missing)")
    args = ap.parse_args()

    from archspec.datasets import prepare
    from archspec.inference import evaluate
    from archspec.train import fit

    data = Path(args.data) / "movies"
    if not (data / "train.csv").is_file():
        prepare("movies", args.data)
    out = Path(args.out)
    cap = dict(max_steps=20) if args.quick else {}
    times = {}
    for name in ("late_fusion_text", "late_fusion_trees"):
        run = out / name
        if not (run / "checkpoints" / "last.json").is_file():
            t0 = time.time()
            fit(ROOT / "specs" / f"{name}.yaml", data=str(data / "train.csv"), out=str(run), progress=False,
                log=lambda *a: None, **cap)
            times[name] = time.time() - t0
    spec = (ROOT / "specs" / "fusion_of_runs" / "reception.yaml").read_text()
    for name in ("late_fusion_text", "late_fusion_trees"):
        spec = spec.replace(f"../../runs/{name}", str((out / name).resolve()))
    spec = spec.replace("../../data/movies", str(data.resolve()))
    fused_spec = out / "reception.yaml"
    fused_spec.write_text(spec)
    fused = out / "fusion_of_runs"
    if not (fused / "checkpoints" / "last.json").is_file():
        t0 = time.time()
        fit(fused_spec, out=str(fused), progress=False, log=lambda *a: None)
        times["fusion_of_runs"] = time.time() - t0
    metrics, base = evaluate(fused, data / "test.csv", baseline=True)
    rows = [("text (late_fusion_text run)", "text"), ("trees (late_fusion_trees run)", "trees"),
            ("fusion 0.6 / 0.4", "reception"), ("fusion by vote (0.6 / 0.4)", "reception_vote")]
    print("| model | test accuracy | test macro-F1 | baseline accuracy | baseline macro-F1 |")
    print("|---|---:|---:|---:|---:|")
    for label, key in rows:
        print(f"| {label} | {metrics[f'{key}/accuracy']:.3f} | {metrics.get(f'{key}/f1_macro', float('nan')):.3f} "
              f"| {base.get(f'{key}/accuracy', float('nan')):.3f} | {base.get(f'{key}/f1_macro', float('nan')):.3f} |")
    print("\ntraining time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + (" (quick)" if args.quick else ""))


if __name__ == "__main__":
    main()
