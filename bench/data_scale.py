"""Data at scale: peak memory, time to the first optimizer step and steady-state rows/s against the
number of rows, for the streaming data path (0 and 2 loader workers) and the old eager path.

The data: N generated 224×224 PNG images (coloured rectangles on a gradient, ~5–15 KB each), a text
column (trained WordPiece tokenizer) and a numeric column; a small CNN + text transformer spec with
a multiclass head, batch 32. Each measurement is a fresh Python process (torch pinned to 1 thread)
that trains ``--steps`` optimizer steps, started with an empty data cache (so the one-time
conversion of the CSV is included, as on a first run):

* **peak RSS**: ``ru_maxrss`` of the training process (workers are separate processes; their
  largest peak is reported next to it: ``RUSAGE_CHILDREN``, which also counts a helper process that
  importing torch starts, ~540 MB here, so it is a floor rather than a worker's own figure);
* **first step**: seconds from process start to the end of the first optimizer step (imports,
  reading, pre-flight, fitting, the first batches);
* **rows/s**: rows per second over the steps after the first ``--warmup`` steps.

The eager path is the code before issue 8 (every image decoded into memory before the first step),
taken from git (``--eager-ref``, default the commit before the streaming path) and run the same way;
it is skipped above ``--eager-max-rows`` rows because it needs ~0.6 MB per image.

Two configurations (``--config``):

* ``mixed`` (default): the data above with the CNN at 224×224; the training step costs ~4× the
  decoding, so it measures memory and time to the first step rather than decoding speed;
* ``decode``: photo-like 1024×768 JPEGs (smooth colour fields plus sensor-like noise, ~300 KB each,
  quality 90; a small photo by camera standards) resized to 64×64 for a small CNN, the same text and numeric columns: decoding
  dominates the step, as with real photos fed to a small or frozen model. This is where worker
  processes must pay off (goal: rows/s with 2 workers ≥ 1.5× rows/s with 0 workers).

Usage:
    python bench/data_scale.py --quick                      # N = 200, 800: a minute, checks the script
    python bench/data_scale.py                              # N = 2k, 8k, 32k (idle machine, ~10 min)
    python bench/data_scale.py --config decode --eager-ref ''   # N = 2k, workers vs decoding (~6 min)

Writes ``bench/results/data_scale.json`` and ``.md`` (``data_scale_decode.*`` for ``--config
decode``; ``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EAGER_REF = "9fd099d"  # main before the streaming data path

SPEC = """\
archspec: 1
name: data_scale
inputs:
  text: {type: text, column: text, max_length: 16, tokenizer: {type: wordpiece, vocab_size: 500}}
  image: {type: image, column: image, size: [224, 224], channels: 3, normalize: imagenet}
  x: {type: numeric, columns: [a]}
encoders:
  words:
    type: transformer
    input: text
    config: {model_type: bert, vocab_size: 500, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2,
             intermediate_size: 32, max_position_embeddings: 32}
    pooling: mean
  pixels: {type: cnn, input: image, channels: [8, 16]}
fusions:
  both: {type: early, inputs: [words, pixels, x]}
heads:
  y: {type: multiclass, from: both, classes: 4}
training:
  batch_size: 32
  epochs: 1
  validation_split: 0.0
  seed: 0
WORKERS
"""

# decode-dominated: big JPEGs, small model input
SPEC_DECODE = SPEC.replace("column: image, size: [224, 224]", "column: photo, size: [64, 64]")

PROBE = r"""
import sys, time
T0 = time.perf_counter()
import resource, torch
torch.set_num_threads(1)
steps = []
step = torch.optim.Adam.step
def timed(self, *a, **k):
    out = step(self, *a, **k)
    steps.append(time.perf_counter())
    return out
torch.optim.Adam.step = timed
from archspec.train import fit
fit(sys.argv[1], data=sys.argv[2], out=sys.argv[3], max_steps=int(sys.argv[4]), progress=False, log=lambda *a: None)
import json
print("RESULT " + json.dumps({"steps": [s - T0 for s in steps],
      "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
      "children_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))
"""

WORDS = ("red green blue small large round square bright dark soft hard light heavy cat dog car tree house "
         "river stone cloud music video phone fast slow old new").split()


def make_data(folder: Path, n: int, photos: bool = False) -> None:
    """``n`` images under ``folder/img`` (reused across sizes; with ``photos`` also ``n`` 1024×768 JPEGs
    under ``folder/photo``) and ``folder/dN.csv``."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    (folder / "img").mkdir(parents=True, exist_ok=True)
    r = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 224, dtype=np.float32)
    have = len(list((folder / "img").glob("*.png")))
    for i in range(have, n):
        a = np.empty((224, 224, 3), dtype=np.uint8)
        c = r.integers(0, 255, 6)
        a[..., 0] = (ramp[None, :] * c[0] / 255).astype(np.uint8)
        a[..., 1] = (ramp[:, None] * c[1] / 255).astype(np.uint8)
        a[..., 2] = c[2]
        for _ in range(3):
            y0, x0 = r.integers(0, 200, 2)
            h, w = r.integers(8, 64, 2)
            a[y0:y0 + h, x0:x0 + w] = r.integers(0, 255, 3)
        Image.fromarray(a).save(folder / "img" / f"{i}.png", optimize=False, compress_level=1)
    if photos:
        (folder / "photo").mkdir(exist_ok=True)
        have = len(list((folder / "photo").glob("*.jpg")))
        yy, xx = np.mgrid[0:768, 0:1024].astype(np.float32)
        for i in range(have, n):
            k = r.uniform(0.05, 0.5, 5)
            a = np.stack([(xx * k[0] + yy * k[1]) % 255, (yy * k[2]) % 255, ((xx + yy) * k[3]) % 255], -1)
            a = (a + r.normal(0, 12, a.shape)).clip(0, 255).astype(np.uint8)
            Image.fromarray(a).save(folder / "photo" / f"{i}.jpg", quality=90)
    rng = np.random.default_rng(1)
    text = [" ".join(rng.choice(WORDS, rng.integers(3, 12))) for _ in range(n)]
    table = pd.DataFrame({"image": [f"img/{i}.png" for i in range(n)], "text": text, "a": rng.normal(size=n),
                          "y": rng.integers(0, 4, n)})
    if photos:
        table.insert(1, "photo", [f"photo/{i}.jpg" for i in range(n)])
    table.to_csv(folder / f"d{n}.csv", index=False)


def eager_source(ref: str, dest: Path) -> Path:
    """The package as it was at ``ref`` (``git archive``), for the eager path."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "src"


def measure(src: Path, spec: Path, data: Path, steps: int, work: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "ARCHSPEC_CACHE_DIR": str(work / "cache")}
    shutil.rmtree(work / "cache", ignore_errors=True)
    shutil.rmtree(work / "run", ignore_errors=True)
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", PROBE, str(spec), str(data), str(work / "run"), str(steps)],
                         env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        tail = (res.stdout + res.stderr).strip().splitlines()[-3:]
        return {"error": " | ".join(tail), "wall_s": round(wall, 2)}
    out = json.loads(next(line for line in res.stdout.splitlines() if line.startswith("RESULT "))[7:])
    return out | {"wall_s": round(wall, 2)}


def summarise(r: dict, warmup: int, batch: int, workers: int) -> dict:
    if "error" in r:
        return r
    s = r["steps"]
    steady = (len(s) - 1 - warmup) * batch / (s[-1] - s[warmup]) if len(s) > warmup + 1 else None
    return {"peak_rss_mb": round(r["rss"] / 2**20, 1),
            "worker_peak_rss_mb": round(r["children_rss"] / 2**20, 1) if workers else None,
            "first_step_s": round(s[0], 2), "rows_per_s": round(steady, 1) if steady else None,
            "steps": len(s), "wall_s": r["wall_s"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", choices=["mixed", "decode"], default="mixed",
                   help="mixed: 224×224 PNGs and a CNN at 224×224; decode: 1024×768 JPEGs to 64×64 (decoding dominates)")
    p.add_argument("--quick", action="store_true", help="small sizes (N = 200, 800), few steps")
    p.add_argument("--sizes", type=int, nargs="+", help="row counts (default 2000 8000 32000)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--steps", type=int, help="optimizer steps per measurement (default 40; quick 8)")
    p.add_argument("--warmup", type=int, help="steps left out of rows/s (default 10; quick 2)")
    p.add_argument("--eager-ref", default=EAGER_REF, help="git commit of the eager path ('' to skip it)")
    p.add_argument("--eager-max-rows", type=int, default=8000, help="largest N the eager path is run on")
    p.add_argument("--data-dir", type=Path, help="where to generate the data (default: a temp dir)")
    p.add_argument("--out", type=Path, help="results path without suffix (default bench/results/data_scale[_decode])")
    args = p.parse_args(argv)
    args.out = args.out or ROOT / "bench" / "results" / ("data_scale" if args.config == "mixed" else "data_scale_decode")
    template = SPEC if args.config == "mixed" else SPEC_DECODE
    sizes = args.sizes or ([200, 800] if args.quick else [2000, 8000, 32000] if args.config == "mixed" else [2000])
    steps = args.steps or (8 if args.quick else 40)
    warmup = args.warmup if args.warmup is not None else (2 if args.quick else 10)
    work = Path(tempfile.mkdtemp(prefix="archspec-data-scale-"))
    data_dir = args.data_dir or work / "data"
    print(f"generating {max(sizes)} images in {data_dir} …", flush=True)
    for n in sorted(sizes):
        make_data(data_dir, n, photos=args.config == "decode")
    paths = {"streaming": ROOT / "src"}
    if args.eager_ref:
        paths["eager"] = eager_source(args.eager_ref, work / "eager")
    rows = []
    for n in sizes:
        for path, src in paths.items():
            for w in (args.workers if path == "streaming" else [0]):
                if path == "eager" and n > args.eager_max_rows:
                    rows.append({"path": path, "rows": n, "workers": w, "skipped": f"N > --eager-max-rows"})
                    continue
                spec = work / f"spec_{path}_{w}.yaml"
                spec.write_text(template.replace("WORKERS", f"  num_workers: {w}"))
                print(f"{path:9} N={n:6} workers={w} …", end=" ", flush=True)
                r = summarise(measure(src, spec, data_dir / f"d{n}.csv", steps, work), warmup, 32, w)
                print(r, flush=True)
                rows.append({"path": path, "rows": n, "workers": w, **r})
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.platform(),
              "cpus": os.cpu_count(), "python": platform.python_version(), "quick": args.quick, "config": args.config,
              "steps": steps, "warmup": warmup, "eager_ref": args.eager_ref, "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(table(result) + "\n")
    print(table(result))
    shutil.rmtree(work, ignore_errors=True) if args.data_dir is None else None
    return 0


def table(result: dict) -> str:
    lines = [f"data_scale ({result.get('config', 'mixed')}, {'quick' if result['quick'] else 'full'}, {result['date']}, {result['cpus']} CPUs, "
             f"{result['steps']} steps, rows/s after {result['warmup']})", "",
             "| path | rows | workers | peak RSS (MB) | worker peak (MB) | first step (s) | rows/s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["results"]:
        if "peak_rss_mb" in r:
            lines.append(f"| {r['path']} | {r['rows']} | {r['workers']} | {r['peak_rss_mb']} | "
                         f"{r['worker_peak_rss_mb'] or '–'} | {r['first_step_s']} | {r['rows_per_s']} |")
        else:
            lines.append(f"| {r['path']} | {r['rows']} | {r['workers']} | {r.get('skipped') or r.get('error')} | | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
