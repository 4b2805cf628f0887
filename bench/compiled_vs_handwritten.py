"""Train-step time of each archspec-compiled seed architecture next to its hand-written twin.

For every seed architecture, the spec in ``tests/parity_specs/`` is compiled and its hand-written
PyTorch twin (``tests/handwritten.py``, the one copy shared with the parity tests) gets the same
weights; a check confirms the two give identical outputs before anything is timed. One train step
is: forward, loss, ``zero_grad``, backward, Adam step (Keras' defaults), at batch 32 (Keras'
default batch size). The two are timed interleaved in one process, alternating which goes first
(ABBA...), after a warm-up, with ``torch.set_num_threads(1)``; the report gives the medians and
the median of the per-repetition ratios compiled / hand-written (goal: <= 1.02).

The seed sizes (bert-base at 512 tokens, ResNet-50 at 224x224) would make a step take seconds on
a CPU, where any overhead of the compiled model disappears in the noise; the benchmark therefore
shrinks them (``CPU_SIZES``: a 2-layer 128-wide BERT at 64 tokens, 32x32 images) while keeping
each architecture's structure. It also measures the time from spec file to ready module:
``compile_spec`` in a fresh process (cold: first build, lazy imports of transformers/torchvision
included; the ``import archspec.build`` before it is reported apart) and again in the same
process (warm), for the benchmark-size specs and for the seed-size parity specs.

Usage:
    python bench/compiled_vs_handwritten.py [--reps 30] [--warmup 5] [--compile-reps 3]
        [--archs two_tower,late_fusion] [--no-seed-size] [--out bench/results/compiled_vs_handwritten.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARITY = ROOT / "tests" / "parity_specs"
DEFAULT_OUT = ROOT / "bench" / "results" / "compiled_vs_handwritten.json"
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BATCH = 32
SMALL_BERT = {"model_type": "bert", "vocab_size": 30522, "hidden_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 2, "intermediate_size": 512, "max_position_embeddings": 512}
# (YAML path, value) overrides applied to the parity specs; everything else stays as the seed has it
CPU_SIZES = {
    "multitask_classifier": [(("inputs", "text_input", "max_length"), 64),
                             (("encoders", "bert_model", "config"), SMALL_BERT)],
    "two_tower": [],
    "early_fusion": [(("inputs", "text_input", "max_length"), 64),
                     (("encoders", "bert_model", "config"), SMALL_BERT),
                     (("inputs", "image_input", "size"), [32, 32])],
    "late_fusion": [(("inputs", "text_input", "max_length"), 64),
                    (("encoders", "text_model", "config"), SMALL_BERT)],
    "hybrid_fusion": [],
    "multilabel_early_fusion": [(("inputs", "text_input", "max_length"), 64),
                                (("encoders", "bert_model", "config"), SMALL_BERT),
                                (("inputs", "image_input", "size"), [32, 32])],
}


def bench_spec(arch: str) -> dict:
    """The parity spec of ``arch`` with the CPU-size overrides applied."""
    import yaml

    spec = yaml.safe_load((PARITY / f"{arch}.yaml").read_text())
    for path, value in CPU_SIZES[arch]:
        node = spec
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = copy.deepcopy(value)
    return spec


def random_targets(model, n: int, g) -> dict:
    import torch

    out = {}
    for name in model.predictions:
        cfg = model.node_configs[name]
        shape = model.shapes[name]
        if getattr(cfg, "loss", None) is None:
            continue
        if shape.kind == "score" or getattr(cfg, "type", "") == "multilabel":
            out[name] = torch.randint(0, 2, (n, *shape.dims), generator=g).float()
        else:
            out[name] = torch.randint(0, shape.dims[0], (n,), generator=g)
    return out


def setup(arch: str, twin_cls=None):
    """(compiled step, twin step, facts) for one architecture, with parity checked."""
    import torch
    import yaml

    import handwritten as hw
    from archspec.build import compile_loss, compile_spec

    spec = bench_spec(arch)
    model = compile_spec(yaml.safe_dump(spec, sort_keys=False))
    twin = (twin_cls or hw.TWINS[arch]).from_spec(spec)
    hw.copy_weights(model, twin)
    g = torch.Generator().manual_seed(0)
    batch = model.example_batch(BATCH, seed=1)
    targets = random_targets(model, BATCH, g)
    args = hw.twin_args(batch, twin)

    model.eval(), twin.eval()
    with torch.no_grad():
        out, mine = model(batch), twin(*args)
    for name, a, b in zip(twin.OUTPUTS, hw.twin_outputs(out, twin), mine):
        if not torch.equal(a, b):
            raise AssertionError(f"{arch}.{name}: compiled and hand-written outputs differ")
    model.train(), twin.train()

    loss = compile_loss(model)
    opt_a = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3, eps=1e-7)
    opt_b = torch.optim.Adam([p for p in twin.parameters() if p.requires_grad], lr=1e-3, eps=1e-7)

    def compiled_step():
        total, _ = loss(model(batch), targets)
        opt_a.zero_grad(set_to_none=True)
        total.backward()
        opt_a.step()

    def twin_step():
        total = twin.loss(twin(*args), targets)
        opt_b.zero_grad(set_to_none=True)
        total.backward()
        opt_b.step()

    facts = {"params": sum(p.numel() for p in model.parameters()),
             "inputs": {k: list(v.shape) for k, v in batch.items()}}
    return compiled_step, twin_step, facts


def time_pair(step_a, step_b, reps: int, warmup: int) -> tuple[list, list]:
    """Interleaved timings (seconds) of two step functions: A B, B A, A B, ... Steps under 20 ms
    get ten times the repetitions (they are cheap, and the noisiest relative to their length)."""
    for _ in range(warmup):
        step_a()
        step_b()
    start = time.perf_counter()
    step_a()
    if time.perf_counter() - start < 0.02:
        reps *= 10
    ta, tb = [], []
    for i in range(reps):
        order = ((step_a, ta), (step_b, tb)) if i % 2 == 0 else ((step_b, tb), (step_a, ta))
        for fn, sink in order:
            start = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - start)
    return ta, tb


COMPILE_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(1)
from archspec.build import compile_spec
t1 = time.perf_counter()
compile_spec(sys.argv[1])
t2 = time.perf_counter()
compile_spec(sys.argv[1])
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "cold": t2 - t1, "warm": t3 - t2}))
"""


def compile_times(path: Path, reps: int) -> dict:
    """Medians over ``reps`` fresh processes of import, cold compile and warm compile (seconds)."""
    runs = []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    for _ in range(reps):
        proc = subprocess.run([sys.executable, "-c", COMPILE_PROBE, str(path)], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr)
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {k: statistics.median(r[k] for r in runs) for k in ("import", "cold", "warm")} | {"runs": runs}


def loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--compile-reps", type=int, default=3)
    p.add_argument("--archs", default=",".join(CPU_SIZES))
    p.add_argument("--no-seed-size", action="store_true", help="skip compile times of the seed-size specs")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    args = p.parse_args(argv)

    import torch
    import yaml

    torch.set_num_threads(1)
    archs = [a for a in args.archs.split(",") if a]
    load_before = loadavg()
    results = {}
    import handwritten as hw

    # the smallest model once more, against a twin in the nn.Sequential style (the compiled MLP's
    # structure): separates the cost of nn.Module calls from the cost of the compiled model itself
    rows = [(a, a, None) for a in archs]
    if "two_tower" in archs:
        rows.insert(archs.index("two_tower") + 1, ("two_tower [nn.Sequential twin]", "two_tower",
                                                   hw.TwoTowerSequential))
    for label, arch, twin_cls in rows:
        torch.manual_seed(0)
        step_c, step_h, facts = setup(arch, twin_cls)
        tc, th = time_pair(step_c, step_h, args.reps, args.warmup)
        ratios = [c / h for c, h in zip(tc, th)]
        row = {
            **facts,
            "compiled_ms": 1e3 * statistics.median(tc),
            "handwritten_ms": 1e3 * statistics.median(th),
            "ratio_of_medians": statistics.median(tc) / statistics.median(th),
            "median_ratio": statistics.median(ratios),
            "samples_ms": {"compiled": [1e3 * t for t in tc], "handwritten": [1e3 * t for t in th]},
        }
        row["reps"] = len(tc)
        results[label] = row
        print(f"{label:32} compiled {row['compiled_ms']:9.3f} ms   hand-written {row['handwritten_ms']:9.3f} ms"
              f"   ratio {row['median_ratio']:.3f}", flush=True)

    compile_rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            path = Path(tmp) / f"{arch}.yaml"
            path.write_text(yaml.safe_dump(bench_spec(arch), sort_keys=False))
            compile_rows[f"{arch} (bench size)"] = compile_times(path, args.compile_reps)
            if not args.no_seed_size:
                compile_rows[f"{arch} (seed size)"] = compile_times(PARITY / f"{arch}.yaml", 1)
    for name, row in compile_rows.items():
        print(f"{name:40} import {row['import']:.2f} s   cold {row['cold']:.3f} s   warm {row['warm']:.3f} s",
              flush=True)

    report = {
        "benchmark": "compiled_vs_handwritten",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/compiled_vs_handwritten.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "loadavg_1min_before": load_before, "loadavg_1min_after": loadavg()},
        "settings": {"batch": BATCH, "reps": args.reps, "warmup": args.warmup, "optimizer": "Adam(lr=1e-3, eps=1e-7)",
                     "cpu_sizes": {a: [[list(k), v] for k, v in CPU_SIZES[a]] for a in archs}},
        "train_step": results,
        "compile_spec": compile_rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
