"""Nearest-neighbour search for two-tower serving: exact search, faiss HNSW and faiss IVF.

Candidates: N random 64-d vectors (Gaussian, L2-normalised: cosine via inner product, as
``archspec index`` searches a cosine model) and a clustered variant (vectors around 1,000 random
centres, normalised), 1,000 queries drawn the same way, k = 10. For every index:

- build time (seconds, including IVF's k-means training);
- memory: the serialised index size (``faiss.serialize_index``), and the process's peak RSS;
- query latency: single queries (one ``search`` call per query on one thread, as one request per
  core; p50/p99 over all queries) and one batched call for all queries on ``--threads`` threads
  (wall time, and per query);
- recall@10 against exact search (faiss ``IndexFlatIP``).

The numpy row is :class:`archspec.retrieval.ExactIndex`, what ``archspec index`` falls back to
without faiss. Threads are pinned (``--threads``, default 2) for faiss and numpy's BLAS.

Usage:
    python bench/retrieval.py --quick                 # 20,000 candidates, 200 queries: seconds
    python bench/retrieval.py                         # 1,000,000 candidates, 1,000 queries: an idle machine

Writes ``bench/results/retrieval.json`` (``retrieval_quick.json`` with --quick) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pin(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def data(kind: str, n: int, q: int, d: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    if kind == "random":
        x = rng.standard_normal((n, d), dtype=np.float32)
        y = rng.standard_normal((q, d), dtype=np.float32)
    else:
        centres = rng.standard_normal((1000, d), dtype=np.float32)
        x = centres[rng.integers(0, 1000, n)] + 0.3 * rng.standard_normal((n, d), dtype=np.float32)
        y = centres[rng.integers(0, 1000, q)] + 0.3 * rng.standard_normal((q, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return x, y


def _percentile(values, p):
    import numpy as np

    return float(np.percentile(np.asarray(values), p))


def measure(name: str, index, queries, k: int, truth, build_s: float, size_bytes: int | None,
            threads: int = 1) -> dict:
    """Single queries run on one thread (one request per core, as a server would), the batched call
    on ``threads``."""
    import faiss
    import numpy as np

    faiss.omp_set_num_threads(1)
    index.search(queries[:1], k)  # warm-up
    single = []
    found = []
    for i in range(len(queries)):
        t0 = time.perf_counter()
        _, ids = index.search(queries[i:i + 1], k)
        single.append((time.perf_counter() - t0) * 1e3)
        found.append(ids[0])
    faiss.omp_set_num_threads(threads)
    t0 = time.perf_counter()
    _, batch_ids = index.search(queries, k)
    batch_ms = (time.perf_counter() - t0) * 1e3
    recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(batch_ids, truth)]))
    return {"index": name, "build_s": round(build_s, 3), "size_mb": None if size_bytes is None else round(size_bytes / 2**20, 1),
            "single_p50_ms": round(_percentile(single, 50), 4), "single_p99_ms": round(_percentile(single, 99), 4),
            "batch_ms": round(batch_ms, 2), "batch_per_query_ms": round(batch_ms / len(queries), 4),
            "recall@10": round(recall, 4), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def run(args) -> dict:
    import faiss
    import numpy as np

    sys.path.insert(0, str(ROOT / "src"))
    from archspec.retrieval import ExactIndex

    faiss.omp_set_num_threads(args.threads)
    rows = []
    for variant in args.variants:
        x, q = data(variant, args.n, args.queries, args.dim, args.seed)
        flat = faiss.IndexFlatIP(args.dim)
        t0 = time.perf_counter()
        flat.add(x)
        build = time.perf_counter() - t0
        _, truth = flat.search(q, args.k)
        rows.append({"data": variant, **measure("faiss exact (IndexFlatIP)", flat, q, args.k, truth, build,
                                               len(faiss.serialize_index(flat)), args.threads)})
        print(rows[-1], flush=True)
        if not args.skip_numpy:
            t0 = time.perf_counter()
            ex = ExactIndex(x, "ip")
            rows.append({"data": variant, **measure("numpy exact (fallback)", ex, q, args.k, truth,
                                                   time.perf_counter() - t0, x.nbytes, args.threads)})
            print(rows[-1], flush=True)
        del flat
        t0 = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(args.dim, args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = args.ef_construction
        hnsw.add(x)
        build = time.perf_counter() - t0
        size = len(faiss.serialize_index(hnsw))
        for ef in args.ef_search:
            hnsw.hnsw.efSearch = ef
            rows.append({"data": variant, **measure(f"faiss HNSW M={args.hnsw_m} efC={args.ef_construction} "
                                                   f"efSearch={ef}", hnsw, q, args.k, truth, build, size, args.threads)})
            print(rows[-1], flush=True)
        del hnsw
        if not args.nprobe:  # `--nprobe` with no value: no IVF index
            del x
            continue
        nlist = args.nlist or int(4 * np.sqrt(args.n))
        t0 = time.perf_counter()
        quantizer = faiss.IndexFlatIP(args.dim)
        ivf = faiss.IndexIVFFlat(quantizer, args.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.train(x)
        ivf.add(x)
        build = time.perf_counter() - t0
        size = len(faiss.serialize_index(ivf))
        for nprobe in args.nprobe:
            ivf.nprobe = nprobe
            rows.append({"data": variant, **measure(f"faiss IVF nlist={nlist} nprobe={nprobe}", ivf, q, args.k,
                                                   truth, build, size, args.threads)})
            print(rows[-1], flush=True)
        del ivf, quantizer, x
    return {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "faiss": faiss.__version__, "numpy": np.__version__, "threads": args.threads,
                    "load_before": os.getloadavg()[0]},
        "config": {"n": args.n, "queries": args.queries, "dim": args.dim, "k": args.k, "seed": args.seed},
        "rows": rows,
    }


def table(result: dict) -> str:
    lines = ["| data | index | build s | size MB | single p50 ms | single p99 ms | batch ms/query | recall@10 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['data']} | {r['index']} | {r['build_s']} | {r['size_mb']} | {r['single_p50_ms']} | "
                     f"{r['single_p99_ms']} | {r['batch_per_query_ms']} | {r['recall@10']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="20,000 candidates and 200 queries (a smoke run)")
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=["random", "clustered"], choices=["random", "clustered"])
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--ef-search", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--nlist", type=int, default=0, help="IVF cells (default 4·sqrt(n))")
    p.add_argument("--nprobe", type=int, nargs="*", default=[16, 64, 128], help="IVF cells searched (none: no IVF)")
    p.add_argument("--skip-numpy", action="store_true", help="leave out the numpy exact search")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.queries = 20_000, 200
    _pin(args.threads)
    result = run(args)
    out = args.out or ROOT / "bench" / "results" / ("retrieval_quick.json" if args.quick else "retrieval.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
