"""Load test of `archspec serve`: N requests from C concurrent clients against a real server.

It trains a small run (numeric + text inputs, a multiclass and a regression head; a few seconds) or
takes ``--run RUN``, starts ``archspec serve`` on a free loopback port in a fresh process, waits for
``/health``, and then sends ``--requests`` one-row ``POST /predict`` requests from ``--clients``
threads (each its own ``httpx.Client``, keep-alive). Every answer is checked: status 200, one
prediction, and equal to the prediction the same row gets alone (so nothing is lost or mixed up
between batched requests). It records the latency of every request (send → answer parsed) and
writes p50/p90/p99/max, the throughput and the machine to ``bench/results/serve_load.json`` and
``.md``.

Usage:
    python bench/serve_load.py            # 2,000 requests from 8 clients
    python bench/serve_load.py --quick    # 200 requests from 8 clients (a smoke test)
    python bench/serve_load.py --run runs/demo --data data/movies/test.csv --requests 5000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

SPEC = """\
archspec: 1
name: serve_bench
inputs:
  num: {type: numeric, columns: [a, b, c, d]}
  txt: {type: text, column: text, max_length: 16, tokenizer: {type: wordpiece, vocab_size: 200, min_frequency: 1}}
encoders:
  t: {type: embedding_bag, input: txt, dim: 16}
fusions:
  f: {type: early, inputs: [num, t], layers: [32]}
heads:
  label: {type: multiclass, from: f, classes: 3}
  score: {type: regression, from: f}
training:
  batch_size: 32
  epochs: 2
  seed: 0
"""


def _train(tmp: Path) -> tuple[Path, Path]:
    import numpy as np
    import pandas as pd

    from archspec.train import fit

    rng = np.random.default_rng(0)
    words = ["good", "bad", "film", "plot", "actor", "music", "long", "short", "fun", "dull"]
    df = pd.DataFrame(rng.normal(size=(400, 4)), columns=list("abcd"))
    df["text"] = [" ".join(rng.choice(words, size=6)) for _ in range(len(df))]
    df["label"] = (df.a > 0).astype(int) + (df.b > 0.5).astype(int)
    df["score"] = df.c * 2 + df.d
    data = tmp / "data.csv"
    df.to_csv(data, index=False)
    (tmp / "spec.yaml").write_text(SPEC)
    fit(str(tmp / "spec.yaml"), data=str(data), out=str(tmp / "run"), progress=False, log=lambda *a, **k: None)
    return tmp / "run", data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 requests (a smoke test)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--run", help="serve this run instead of training a small one")
    ap.add_argument("--data", help="rows to send (with --run); default: the small run's data")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--out", default=str(RESULTS / "serve_load.json"))
    args = ap.parse_args(argv)
    n_req = 200 if args.quick else args.requests

    import httpx
    import pandas as pd

    sys.path.insert(0, str(ROOT / "src"))
    tmp = Path(tempfile.mkdtemp(prefix="archspec-serve-bench-"))
    if args.run:
        run, data = Path(args.run), Path(args.data)
    else:
        run, data = _train(tmp)
    rows = json.loads(pd.read_csv(data).head(200).to_json(orient="records")) if data.suffix == ".csv" else \
        json.loads(pd.read_json(data, lines=True).head(200).to_json(orient="records"))

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "archspec", "serve", str(run.resolve()), "--port", str(port),
                               "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)],
                              cwd=data.resolve().parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=60) as c:
            for _ in range(600):  # ≤ 120 s to load the run
                try:
                    if c.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            else:
                raise SystemExit("server did not come up")
            reference = c.post("/predict", json={"rows": rows}).json()["predictions"]

        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()

        def client(k: int):
            mine = []
            with httpx.Client(base_url=base, timeout=60) as c:
                for i in range(k, n_req, args.clients):
                    row = i % len(rows)
                    t0 = time.perf_counter()
                    r = c.post("/predict", json={"rows": [rows[row]]})
                    body = r.json()
                    mine.append(time.perf_counter() - t0)
                    ok = r.status_code == 200 and len(body.get("predictions", [])) == 1 and all(
                        (abs(v - reference[row][key]) <= 1e-5 + 1e-5 * abs(reference[row][key])
                         if isinstance(v, float) else v == reference[row][key])
                        for key, v in body["predictions"][0].items())
                    if not ok:
                        with lock:
                            errors.append(f"request {i}: {r.status_code} {r.text[:200]}")
            with lock:
                latencies.extend(mine)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=30)

    ms = [x * 1000 for x in latencies]
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/serve_load.py" + (" --quick" if args.quick else f" --requests {n_req}")
                   + f" --clients {args.clients} --max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms:g}",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_avg_1m": os.getloadavg()[0]},
        "run": str(run) if args.run else "small trained run (bench/serve_load.py SPEC)",
        "requests": n_req, "clients": args.clients, "answered_ok": len(latencies) - len(errors),
        "lost_or_wrong": len(errors) + (n_req - len(latencies)), "errors": errors[:10],
        "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms,
        "wall_s": round(wall, 3), "requests_per_s": round(n_req / wall, 1),
        "latency_ms": {"p50": round(statistics.median(ms), 2), "p90": round(_pct(ms, 90), 2),
                       "p99": round(_pct(ms, 99), 2), "max": round(max(ms), 2), "mean": round(statistics.mean(ms), 2)},
    }
    out = Path(args.out)
    if args.quick and args.out == str(RESULTS / "serve_load.json"):
        out = RESULTS / "serve_load_quick.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    lat = result["latency_ms"]
    md = (f"# serve load test\n\n`{result['command']}` at {result['when']} on {result['machine']['cpus']} CPUs "
          f"(load {result['machine']['load_avg_1m']:.2f})\n\n"
          f"| requests | clients | ok | lost/wrong | req/s | p50 ms | p90 ms | p99 ms | max ms |\n"
          f"|---|---|---|---|---|---|---|---|---|\n"
          f"| {n_req} | {args.clients} | {result['answered_ok']} | {result['lost_or_wrong']} | "
          f"{result['requests_per_s']} | {lat['p50']} | {lat['p90']} | {lat['p99']} | {lat['max']} |\n")
    out.with_suffix(".md").write_text(md)
    print(md)
    return 0 if result["lost_or_wrong"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
