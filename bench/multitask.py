"""Multi-task loss weighting, MMoE sharing and cross-attention fusion, measured on real data.

Two comparisons, each variant trained with the same budget (the spec's epochs, batch size and
optimizer) for several seeds, as a user would run them, in fresh processes:

1. ``movies`` (four tasks: genres multi-label, reception and decade multiclass, log review count
   regression; the spec ``specs/movie_multitask_uncertainty.yaml`` and its siblings): ``fixed``
   weights (all 1), ``uncertainty``, ``gradnorm`` (alpha 1.5) and ``dwa`` (T = 2) on one shared
   early fusion, and an ``mmoe`` variant (``specs/movie_mmoe.yaml``, four experts, fixed weights).
2. ``digits_topics`` (the class needs both the text and the digit image): a bidirectional
   ``cross_attention`` fusion of token vectors and image patches (``specs/cross_attention.yaml``)
   against concatenation (``early``) of the same encoders, pooled.

Every task's test metric (``archspec evaluate`` on the held-out file) is reported as mean ± sample
standard deviation over the seeds, with the training wall time and, for learned weightings, the
final effective weights. Results go to ``bench/results/multitask.json`` and ``.md``
(``multitask_quick.*`` with ``--quick``, a smoke run of a few steps whose numbers mean nothing).

    python bench/multitask.py              # full: 3 seeds x 7 variants (long; run on an idle machine)
    python bench/multitask.py --quick      # 1 seed, a few steps each: checks the script end to end
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "bench_multitask"
MOVIE_METRICS = ["genres/f1_micro", "genres/auc", "reception/accuracy", "decade/accuracy", "reviews/mae"]
DIGIT_METRICS = ["label/accuracy", "label/f1_macro"]
WEIGHTING_LINE = "  loss_weighting: {type: uncertainty}\n"
CROSS_FUSION = """  joint:
    type: cross_attention
    query: tokens
    context: patches
    heads: 4
    layers: 1
    feedforward: 128
    bidirectional: true      # pooled tokens and pooled patches, concatenated: (B, 128)
    dropout: 0.1
"""
CONCAT_FUSION = """  joint:
    type: early
    inputs: [tokens, patches]
    layers: [128]
    dropout: 0.1
"""


def _movie(weighting: str | None) -> str:
    text = (ROOT / "specs" / "movie_multitask_uncertainty.yaml").read_text()
    assert WEIGHTING_LINE in text
    return text.replace(WEIGHTING_LINE, f"  loss_weighting: {weighting}\n" if weighting else "")


def _concat() -> str:
    text = (ROOT / "specs" / "cross_attention.yaml").read_text()
    for old, new in ((CROSS_FUSION, CONCAT_FUSION), ("    pooling: none ", "    pooling: mean "),
                     ("    global_pool: none ", "    global_pool: avg  ")):
        assert old in text, old
        text = text.replace(old, new)
    return text


#: variant → (comparison, data set, spec text, metrics)
VARIANTS = {
    "fixed": ("weighting", "movies", lambda: _movie(None), MOVIE_METRICS),
    "uncertainty": ("weighting", "movies", lambda: _movie("{type: uncertainty}"), MOVIE_METRICS),
    "gradnorm": ("weighting", "movies", lambda: _movie("{type: gradnorm, alpha: 1.5}"), MOVIE_METRICS),
    "dwa": ("weighting", "movies", lambda: _movie("{type: dwa, temperature: 2.0}"), MOVIE_METRICS),
    "mmoe": ("weighting", "movies", lambda: (ROOT / "specs" / "movie_mmoe.yaml").read_text(), MOVIE_METRICS),
    "concat": ("fusion", "digits_topics", _concat, DIGIT_METRICS),
    "cross_attention": ("fusion", "digits_topics", lambda: (ROOT / "specs" / "cross_attention.yaml").read_text(),
                        DIGIT_METRICS),
}


def archspec(*args: str) -> list[str]:
    return [sys.executable, "-m", "archspec", *args]


def run(cmd: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed, proc


def spec_for(variant: str, seed: int) -> Path:
    """The variant's spec with this seed, its data paths made absolute, under runs/bench_multitask/."""
    _, data, make, _ = VARIANTS[variant]
    text = make().replace("../data/", str(ROOT / "data") + "/")
    marker = "\ntraining:\n"
    assert marker in text
    text = text.replace(marker, f"{marker}  seed: {seed}\n")
    path = RUNS / "specs" / f"{variant}_seed{seed}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def summary(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(results: list[dict], comparison: str) -> str:
    rows = [r for r in results if r["comparison"] == comparison]
    if not rows:
        return ""
    metrics = rows[0]["metrics"]
    lines = ["| variant | " + " | ".join(metrics) + " | parameters | train time | final weights |",
             "|---|" + "---:|" * (len(metrics) + 2) + "---|"]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        runs = [r for r in rows if r["variant"] == variant]
        cells = [summary([r["model"][m] for r in runs if m in r["model"]]) for m in metrics]
        t = statistics.mean(r["train_s"] for r in runs)
        weights = runs[0].get("weights") or {}
        w = ", ".join(f"{k}: {statistics.mean(r['weights'][k] for r in runs):.2f}" for k in weights) or "—"
        n = runs[0].get("params")
        lines.append(f"| `{variant}` | " + " | ".join(cells) + f" | {n:,} | {t:.0f} s | {w} |" if n else
                     f"| `{variant}` | " + " | ".join(cells) + f" | ? | {t:.0f} s | {w} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 seed and a few steps per variant (a smoke run)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per variant (default 3)")
    p.add_argument("--only", nargs="+", choices=sorted(VARIANTS), help="run only these variants")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--out", type=Path, default=None, help="results JSON (default bench/results/multitask.json)")
    args = p.parse_args(argv)
    seeds = [0] if args.quick else list(range(args.seeds))
    out = args.out or ROOT / "bench" / "results" / ("multitask_quick.json" if args.quick else "multitask.json")
    limit = ["--max-steps", "6", "--epochs", "1"] if args.quick else []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    variants = args.only or list(VARIANTS)
    prepared, results = {}, []
    t_all = time.perf_counter()
    for variant in variants:
        comparison, data, _, metrics = VARIANTS[variant]
        if data not in prepared:
            prepared[data], _ = run(archspec("data", "prepare", data), env)
        for seed in seeds:
            spec = spec_for(variant, seed)
            run_dir = RUNS / f"{variant}_seed{seed}"
            if run_dir.exists():
                shutil.rmtree(run_dir)  # only ever our own run directory
            train_s, tr = run(archspec("train", str(spec), "--out", str(run_dir), "--progress", "lines", *limit), env)
            params = re.search(r"([\d,]+) trainable parameters", tr.stdout)
            _, ev = run(archspec("evaluate", str(run_dir), "--data", str(ROOT / "data" / data / "test.csv"),
                                 "--format", "json"), env)
            payload = json.loads(ev.stdout)
            model = payload.get("model", payload)
            last = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()][-1]
            weights = {k[len("weight/"):]: v for k, v in last.items() if k.startswith("weight/")}
            results.append({"variant": variant, "comparison": comparison, "data": data, "seed": seed,
                            "metrics": metrics, "train_s": round(train_s, 2), "model": model,
                            "params": int(params.group(1).replace(",", "")) if params else None,
                            "weights": weights if variant in ("uncertainty", "gradnorm", "dwa") else {},
                            "command": f"archspec train {spec.relative_to(ROOT)} --out {run_dir.relative_to(ROOT)}"
                                       + (" " + " ".join(limit) if limit else "")})
            print(f"{variant:16} seed {seed}  " + "  ".join(f"{m} {model.get(m, float('nan')):.3f}"
                                                          for m in metrics) + f"  train {train_s:.0f} s", flush=True)
    total = time.perf_counter() - t_all
    info = {"python": platform.python_version(), "cpus": os.cpu_count(), "threads": args.threads,
            "platform": platform.platform()}
    report = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": args.quick,
              "seeds": seeds, "machine": info, "total_s": round(total, 1), "results": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    head = (f"`python bench/multitask.py{' --quick' if args.quick else ''}` — {len(seeds)} seed(s) per variant, "
            f"{info['cpus']} CPUs, {args.threads} torch thread(s), total {total / 60:.1f} min. Test-split "
            "metrics (`archspec evaluate`), mean ± sample standard deviation over seeds; `reviews/mae` is lower "
            "= better; final weights are the last epoch's effective loss weights."
            + (" QUICK MODE: a few steps per run, the numbers only show the script works." if args.quick else ""))
    md = "\n\n".join(x for x in [head, "Loss weighting and MMoE (`movies`, four tasks):",
                                 table(results, "weighting"),
                                 "Cross-attention against concatenation (`digits_topics`):",
                                 table(results, "fusion")] if x) + "\n"
    out.with_suffix(".md").write_text(md)
    print("\n" + md)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
