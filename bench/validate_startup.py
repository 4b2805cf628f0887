"""Cold-process cost of `archspec validate` next to the cost of merely importing torch.

Each repetition starts fresh Python processes, interleaved (the order alternates between
repetitions so neither command always runs first):

  validate  python -m archspec.cli validate specs/*.yaml
  torch     python -c "import torch"
  python    python -c "pass"            (interpreter start-up, for reference)

and measures each one's wall time (from spawn to exit) and peak resident memory. Peak RSS is
per process: ``os.wait4`` returns the rusage of exactly the child it reaps (``getrusage
(RUSAGE_CHILDREN)`` would give the maximum over all children so far). One untimed warm-up round
runs first so every command starts with the files in the page cache, as it does in daily use.

Usage:
    python bench/validate_startup.py [--reps 10] [--out bench/results/validate_startup.json]

Writes the samples, medians and ratios as JSON and prints a summary table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "validate_startup.json"


def commands(python: str) -> dict[str, list[str]]:
    specs = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs").glob("*.yaml"))
    return {
        "validate": [python, "-m", "archspec.cli", "validate", *specs],
        "torch": [python, "-c", "import torch"],
        "python": [python, "-c", "pass"],
    }


def run_once(argv: list[str]) -> tuple[float, int, int]:
    """``(wall seconds, peak RSS in KiB, exit code)`` of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen
    return wall, usage.ru_maxrss, proc.returncode  # ru_maxrss is in KiB on Linux


def torch_stays_out(python: str) -> bool:
    """Whether validating every shipped spec leaves torch unimported (the point of the design)."""
    code = ("import sys, glob; from archspec.cli import main; "
            "main(['validate', *sorted(glob.glob('specs/*.yaml'))]); "
            "sys.stdout.flush(); print('TORCH', 'torch' in sys.modules)")
    out = subprocess.run([python, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False).stdout
    return "TORCH False" in out


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=10, help="timed repetitions of each command (default 10)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file")
    p.add_argument("--python", default=sys.executable, help="interpreter to benchmark (default: this one)")
    args = p.parse_args(argv)

    cmds = commands(args.python)
    load_before = os.getloadavg()
    for name, argv_ in cmds.items():  # warm-up, untimed; also fails fast on a broken command
        _, _, rc = run_once(argv_)
        if rc != 0:
            print(f"`{' '.join(argv_)}` exited with {rc}", file=sys.stderr)
            return 1

    samples: dict[str, list[dict]] = {n: [] for n in cmds}
    names = list(cmds)
    for rep in range(args.reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            wall, rss, rc = run_once(cmds[name])
            if rc != 0:
                print(f"{name} exited with {rc} in repetition {rep}", file=sys.stderr)
                return 1
            samples[name].append({"wall_s": round(wall, 4), "max_rss_kib": rss})

    summary = {}
    for name, rows in samples.items():
        walls = [r["wall_s"] for r in rows]
        rss = [r["max_rss_kib"] for r in rows]
        summary[name] = {
            "median_wall_s": round(statistics.median(walls), 4),
            "min_wall_s": round(min(walls), 4),
            "max_wall_s": round(max(walls), 4),
            "median_max_rss_mib": round(statistics.median(rss) / 1024, 1),
        }
    v, t = summary["validate"], summary["torch"]
    result = {
        "benchmark": "validate_startup",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "python": platform.python_version(),
            "archspec": _version("archspec"),
            "torch": _version("torch"),
            "pydantic": _version("pydantic"),
            # other work on the machine skews absolute times (interleaving protects the ratio)
            "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        },
        "reps": args.reps,
        "commands": {n: shlex.join(["python", *c[1:]]) for n, c in cmds.items()},
        "specs_validated": len(cmds["validate"]) - 4,
        "validate_imports_torch": not torch_stays_out(args.python),
        "summary": summary,
        "ratios": {
            "torch_over_validate_wall": round(t["median_wall_s"] / v["median_wall_s"], 2),
            "torch_over_validate_rss": round(t["median_max_rss_mib"] / v["median_max_rss_mib"], 2),
        },
        "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    m = result["machine"]
    print(f"{args.reps} interleaved cold starts each, {m['cpus_usable']} usable CPUs, Python {m['python']}, "
          f"torch {m['torch']}, load average {m['loadavg_1min_before_after'][0]} → "
          f"{m['loadavg_1min_before_after'][1]}")
    print(f"{'command':<10} {'median wall':>12} {'min':>8} {'max':>8} {'peak RSS':>10}")
    for name, s in summary.items():
        print(f"{name:<10} {s['median_wall_s']:>11.3f}s {s['min_wall_s']:>7.3f}s {s['max_wall_s']:>7.3f}s "
              f"{s['median_max_rss_mib']:>7.1f} MiB")
    r = result["ratios"]
    print(f"`import torch` alone takes {r['torch_over_validate_wall']}x the wall time and "
          f"{r['torch_over_validate_rss']}x the memory of validating all {result['specs_validated']} specs "
          f"(torch imported by validate: {result['validate_imports_torch']})")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
