"""The seed's late fusion as it writes it, on real data (`movies`): a text transformer and
gradient-boosted trees trained as separate runs, then combined without retraining (0.6 / 0.4 and
a vote). Prints a markdown table of each member and each fusion against the baseline on the test file,
and writes it with the text member's per-epoch validation metrics, its test metrics at its best and
last checkpoints and the training times to ``bench/results/fusion_of_runs{,_quick}.{json,md}``.
Runs that exist in ``--out`` are reused (evaluated again, not retrained; their training times are
kept in ``OUT/times.json``).

    python bench/fusion_of_runs.py            # full size (the README's numbers)
    python bench/fusion_of_runs.py --quick    # a few steps, to check the pipeline
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
    out.mkdir(parents=True, exist_ok=True)
    cap = dict(max_steps=20) if args.quick else {}
    times_file = out / "times.json"
    times = json.loads(times_file.read_text()) if times_file.is_file() else {}
    for name in ("late_fusion_text", "late_fusion_trees"):
        run = out / name
        if not (run / "checkpoints" / "last.json").is_file():
            t0 = time.time()
            fit(ROOT / "specs" / f"{name}.yaml", data=str(data / "train.csv"), out=str(run), progress=False,
                log=lambda *a: None, **cap)
            times[name] = time.time() - t0
            times_file.write_text(json.dumps(times))
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
        times_file.write_text(json.dumps(times))
    metrics, base = evaluate(fused, data / "test.csv", baseline=True)
    rows = [("text (late_fusion_text run)", "text"), ("trees (late_fusion_trees run)", "trees"),
            ("fusion 0.6 / 0.4", "reception"), ("fusion by vote (0.6 / 0.4)", "reception_vote")]
    lines = ["| model | test accuracy | test macro-F1 | baseline accuracy | baseline macro-F1 |",
             "|---|---:|---:|---:|---:|"]
    for label, key in rows:
        lines.append(f"| {label} | {metrics[f'{key}/accuracy']:.3f} | {metrics.get(f'{key}/f1_macro', float('nan')):.3f} "
                     f"| {base.get(f'{key}/accuracy', float('nan')):.3f} | {base.get(f'{key}/f1_macro', float('nan')):.3f} |")
    # the text member over its epochs: the fusion uses its best checkpoint (lowest validation loss)
    text_run = out / "late_fusion_text"
    epochs = [json.loads(x) for x in (text_run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    epochs = [{k: e.get(k) for k in ("epoch", "step", "val/loss", "val/reception/accuracy", "val/reception/f1_macro")}
              for e in epochs if "val/loss" in e]
    last = evaluate(text_run, data / "test.csv", checkpoint="last")
    best_step = json.loads((text_run / "checkpoints" / "best.json").read_text())["step"]
    lines += ["", "text member by epoch (validation split; the fusion uses the best checkpoint, step "
              f"{best_step}):", "", "| epoch | step | val loss | val accuracy | val macro-F1 |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {e['epoch']} | {e['step']} | {e['val/loss']:.3f} | {e['val/reception/accuracy']:.3f} "
              f"| {e['val/reception/f1_macro']:.3f} |" for e in epochs]
    lines += ["", f"text member, last checkpoint (step {epochs[-1]['step'] if epochs else '?'}), test: accuracy "
              f"{last['reception/accuracy']:.3f}, macro-F1 {last['reception/f1_macro']:.3f}", "",
              "training time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items())
              + (" (quick)" if args.quick else "")
              + f"; {os.cpu_count()} CPUs, {platform.machine()}"]
    text = "\n".join(lines) + "\n"
    print(text)
    results = ROOT / "bench" / "results" / ("fusion_of_runs_quick" if args.quick else "fusion_of_runs")
    results.with_suffix(".md").write_text("# bench/fusion_of_runs.py" + (" --quick" if args.quick else "") + "\n\n" + text)
    results.with_suffix(".json").write_text(json.dumps(
        {"quick": args.quick, "test": metrics, "baseline": base, "text_epochs": epochs, "text_best_step": best_step,
         "text_last_test": last, "train_seconds": times, "cpus": os.cpu_count()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
