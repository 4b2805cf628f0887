"""Command line: parses arguments and calls the pipeline; maps errors to exit codes, never tracebacks.

Exit codes (defined in :mod:`archspec.errors`): 0 success, 1 invalid spec, 2 usage error,
3 data error, 4 checkpoint/run error, 5 training error, 6 output error, 7 pretrained files could not
be fetched, 130 interrupted.

Every ``--out`` is checked with :func:`archspec.output_paths.check_output_path` before any work.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__
from .errors import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, EXIT_USAGE, ArchspecError, SpecError, render_github


def _count(lo: int, hi: int | None = None):
    """An argparse type: an integer in ``[lo, hi]`` (the same bounds as the spec's field)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{value} is out of range: give a number "
                                             + (f"from {lo} to {hi:,}" if hi is not None else f"≥ {lo}"))
        return value

    parse.__name__ = "number"
    return parse
class _DataAction(argparse.Action):
    """``--data [FILE]``: a YAML name after ``--data`` is a spec to validate, not a data file."""

    def __call__(self, parser, namespace, value, option_string=None):
        if isinstance(value, str) and value.lower().endswith((".yaml", ".yml")):
            namespace.data_specs = [*(getattr(namespace, "data_specs", None) or []), value]
            value = True
        setattr(namespace, self.dest, value)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="archspec", description="Declarative model compiler for PyTorch.")
    p.add_argument("--version", action="version", version=f"archspec {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    v = sub.add_parser("validate", help="check specs without importing torch")
    v.add_argument("files", nargs="*", metavar="FILE")
    v.add_argument("--strict", action="store_true", help="treat warnings as errors")
    v.add_argument("--format", choices=["text", "json", "github", "sarif"], default="text")
    v.add_argument("--shapes", action="store_true",
                   help="print every node's inferred output shape and parameter count")
    v.add_argument("--online", action="store_true",
                   help="fetch the config.json of hub models not in the cache (no torch, a few KB each)")
    v.add_argument("--run", metavar="RUN", help="count parameters with the vocabulary sizes RUN fitted")
    v.add_argument("--data", metavar="FILE", nargs="?", const=True, default=None, action=_DataAction,
                   help="also check the data's header against the spec (training.data files, or FILE)")
    v.add_argument("--only-specs", action="store_true",
                   help="skip files without a top-level `archspec:` key (for pre-commit on *.yaml)")

    df = sub.add_parser("diff", help="what a change to a spec does: nodes, fields, edges, shapes, parameters")
    df.add_argument("old", metavar="OLD", help="spec file, or REF:path read from git (main:specs/x.yaml)")
    df.add_argument("new", metavar="NEW", help="spec file, or REF:path")
    df.add_argument("--format", choices=["text", "json", "markdown"], default="text",
                    help="markdown is made for a pull-request comment")

    sub.add_parser("schema", help="print the JSON Schema (draft 2020-12) of the spec language")

    b = sub.add_parser("build", help="compile a spec into an nn.Module and summarise it")
    b.add_argument("file", metavar="SPEC", help="a spec file, or a run directory (its trained weights)")
    b.add_argument("--format", choices=["text", "json"], default="text")
    b.add_argument("--graph", choices=["mermaid", "dot"], help="print a diagram of the graph instead")
    b.add_argument("--export", choices=["torchscript", "onnx", "torch_export"], action="append",
                   help="export the model (repeatable)")
    b.add_argument("--out", metavar="DIR", help="directory for --export / --graph output")
    b.add_argument("--run", metavar="RUN", help="build with the vocabulary sizes a trained run fitted")

    t = sub.add_parser("train", help="train a spec on its data; writes a run directory")
    t.add_argument("file", metavar="SPEC", nargs="?", help="spec file (optional with --resume)")
    t.add_argument("--data", metavar="FILE", help="training data (overrides training.data.train)")
    t.add_argument("--out", metavar="DIR", help="run directory (default runs/<name>)")
    t.add_argument("--resume", metavar="RUN", help="continue a run from its last checkpoint")
    t.add_argument("--init-from", metavar="RUN",
                   help="start from another run's weights, matched by node name (e.g. after unfreezing)")
    t.add_argument("--epochs", type=_count(1, 100_000), metavar="N", help="override training.epochs (1 to 100,000)")
    t.add_argument("--max-steps", type=_count(1), metavar="N", help="stop after this many optimizer steps (≥ 1)")
    t.add_argument("--plot", action="store_true", help="draw the learning curves to RUN/learning_curves.png")
    t.add_argument("--progress", choices=["auto", "bar", "lines"], default="auto",
                   help="live progress bar (default: when stdout is a terminal)")
    t.add_argument("--nproc-per-node", type=_count(1, 1024), default=1, metavar="N",
                   help="train with N processes (DistributedDataParallel via torchrun)")
    for flag, meta, what in _TORCHRUN_FLAGS:  # several machines: passed through to torchrun
        t.add_argument(flag, metavar=meta, help=what)
    _track_args(t)

    sw = sub.add_parser("sweep", help="hyperparameter sweep over a spec on Optuna (see docs/loop.md)")
    sw.add_argument("file", metavar="SPEC", nargs="?", help="the base spec")
    sw.add_argument("--config", metavar="SWEEP", help="the sweep file (params, metric, trials, sampler, pruner)")
    sw.add_argument("--out", metavar="DIR", help="sweep directory (default sweeps/<name>); an existing one "
                    "with the same spec and sweep file is joined as another worker")
    sw.add_argument("--resume", metavar="DIR", help="continue a sweep directory")
    sw.add_argument("--show", metavar="DIR", help="print a sweep's trials table and write its best spec")
    sw.add_argument("--storage", metavar="URL", help="Optuna storage (SQLAlchemy URL; default sqlite in DIR)")
    sw.add_argument("--schema", action="store_true", help="print the JSON Schema of sweep files")
    _track_args(sw)

    sv = sub.add_parser("serve", help="HTTP prediction server for a run or export directory (see docs/loop.md)")
    sv.add_argument("run", metavar="RUN", help="a trained run directory or an export directory")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    sv.add_argument("--max-batch", type=int, default=64, metavar="ROWS",
                    help="most rows run in one forward pass when requests are batched (default 64)")
    sv.add_argument("--max-wait-ms", type=float, default=5.0, metavar="MS",
                    help="longest a request waits for others to join its batch (default 5)")
    sv.add_argument("--index", metavar="DIR", help="a catalogue index of the same run (`archspec index`): "
                    "adds POST /retrieve (top-k items for query rows)")

    e = sub.add_parser("evaluate", help="metrics of a trained run on a labelled data file")
    e.add_argument("run", metavar="RUN")
    e.add_argument("--data", metavar="FILE", required=True)
    e.add_argument("--format", choices=["text", "json"], default="text")
    e.add_argument("--out", metavar="FILE", help="also write the metrics as JSON here")
    e.add_argument("--baseline", action="store_true",
                   help="show trivial baselines (majority class, label frequency, popularity) next to the model")
    e.add_argument("--checkpoint", default="best", metavar="best|last|STEP", type=_checkpoint,
                   help="which weights: best (default), last, or the step of a kept checkpoint")
    e.add_argument("--catalogue", metavar="FILE",
                   help="two towers: also rank each test pair's candidate among every item of this catalogue "
                        "(recall@k, NDCG@k, MRR; see docs/retrieval.md)")
    e.add_argument("--id-column", metavar="COLUMN", help="with --catalogue: the column that identifies an item")
    e.add_argument("--exclude-seen", action="store_true",
                   help="with --catalogue: leave out of each test row's ranking the items its query (user) was "
                        "paired with in the run's training file")
    e.add_argument("--query-id-column", metavar="COLUMN",
                   help="with --exclude-seen: the column that identifies a query (default: the query tower's "
                        "categorical input)")

    pr = sub.add_parser("predict", help="probabilities and labels per head for every row of a data file")
    pr.add_argument("run", metavar="RUN")
    pr.add_argument("--data", metavar="FILE", required=True)
    pr.add_argument("--out", metavar="FILE", required=True, help=".csv, .jsonl or .parquet")
    pr.add_argument("--show", type=_count(0), default=0, metavar="N", help="also print the first N predictions")
    pr.add_argument("--checkpoint", default="best", metavar="best|last|STEP", type=_checkpoint,
                    help="which weights: best (default), last, or the step of a kept checkpoint")

    d = sub.add_parser("data", help="prepare the bundled real data sets the example specs read")
    dsub = d.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.add_parser("list", help="list the data sets")
    dsub.add_parser("clear-cache", help="delete the converted copies of data files (see docs/data.md)")
    dp = dsub.add_parser("prepare", help="write a data set's files under data/ (fixed split, reproducible)")
    dp.add_argument("names", nargs="+", metavar="NAME", help="data set name, or 'all'")
    dp.add_argument("--out", metavar="DIR", default="data", help="root folder (default: data)")

    _retrieval_parsers(sub)

    pl = sub.add_parser("plot", help="draw a run's learning curves to a PNG")
    pl.add_argument("run", metavar="RUN")
    pl.add_argument("--out", metavar="FILE", help=".png (default RUN/learning_curves.png), .svg or .pdf")

    f = sub.add_parser("fetch", help="download the pretrained models, tokenizers and weights specs name")
    f.add_argument("files", nargs="+", metavar="SPEC", help="a spec file, or a run directory (its own spec)")
    f.add_argument("--cache-dir", metavar="DIR",
                   help="put everything under DIR (DIR/huggingface, DIR/torch) to copy to an offline machine")
    for name in ("build", "train", "sweep", "evaluate", "predict", "serve", "embed", "index", "retrieve", "fetch"):
        sub.choices[name].add_argument(
            "--offline", action="store_true",
            help="never reach the network: pretrained files come from the caches (also ARCHSPEC_OFFLINE=1)")
    return p


def _checkpoint(text: str) -> str:
    if text in ("best", "last") or text.isdigit():
        return text
    raise argparse.ArgumentTypeError(f"'{text}' is not best, last or a step number")


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 error``, ``2 errors``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
def _retrieval_parsers(sub) -> None:
    em = sub.add_parser("embed", help="embed every row of a data file with one tower of a two-tower run")
    em.add_argument("run", metavar="RUN")
    em.add_argument("--data", metavar="FILE", required=True)
    em.add_argument("--tower", choices=["query", "candidate"], required=True)
    em.add_argument("--out", metavar="FILE", required=True, help=".parquet (id, embedding) or .npy (+ .ids.jsonl)")
    em.add_argument("--id-column", metavar="COLUMN", help="column of the row ids (default: row numbers)")
    em.add_argument("--head", metavar="HEAD", help="the similarity head (when the spec has several)")
    em.add_argument("--batch-size", type=int, default=1024, metavar="N")

    ix = sub.add_parser("index", help="embed a catalogue with the candidate tower and build a nearest-neighbour index")
    ix.add_argument("run", metavar="RUN")
    ix.add_argument("--data", metavar="CATALOGUE", required=True)
    ix.add_argument("--out", metavar="DIR", required=True)
    ix.add_argument("--kind", choices=["exact", "hnsw", "ivf"], default="exact")
    ix.add_argument("--id-column", metavar="COLUMN",
                    help="column identifying an item (default: the candidate tower's categorical input)")
    ix.add_argument("--head", metavar="HEAD")
    ix.add_argument("--batch-size", type=int, default=1024, metavar="N")
    ix.add_argument("--threads", type=int, metavar="N", help="faiss threads (default: torch's)")
    ix.add_argument("--hnsw-m", type=int, metavar="M", help="HNSW links per node (default 32)")
    ix.add_argument("--ef-construction", type=int, metavar="N", help="HNSW build beam (default 200)")
    ix.add_argument("--ef-search", type=int, metavar="N", help="HNSW search beam (default 128)")
    ix.add_argument("--nlist", type=int, metavar="N", help="IVF cells (default ~4·sqrt(items))")
    ix.add_argument("--nprobe", type=int, metavar="N", help="IVF cells searched (default nlist/8)")

    rt = sub.add_parser("retrieve", help="top-k catalogue items for every query row, from an index")
    rt.add_argument("run", metavar="RUN")
    rt.add_argument("--index", metavar="DIR", required=True)
    rt.add_argument("--data", metavar="QUERIES", required=True)
    rt.add_argument("-k", type=int, default=10)
    rt.add_argument("--out", metavar="FILE", required=True, help=".csv, .jsonl or .parquet")
    rt.add_argument("--exclude", metavar="COLUMN",
                    help="column listing items each query has already seen (list, or ids separated by | or ,)")
    rt.add_argument("--id-column", metavar="COLUMN", help="column of the query ids (default: row numbers)")
    rt.add_argument("--batch-size", type=int, default=1024, metavar="N")
    rt.add_argument("--threads", type=int, metavar="N")
    rt.add_argument("--ef-search", type=int, metavar="N", help="override the index's HNSW search beam")
    rt.add_argument("--nprobe", type=int, metavar="N", help="override the index's IVF cells searched")


def cmd_embed(args) -> int:
    from .output_paths import check_output_path, run_inputs

    check_output_path(args.out, inputs={args.data: "the data file", **run_inputs(args.run)}, kinds=(".parquet", ".npy"))
    from .retrieval import embed

    n, dim = embed(args.run, args.data, args.out, side=args.tower, head=args.head, id_column=args.id_column,
                   batch_size=args.batch_size)
    print(f"wrote {n} {args.tower} embeddings of width {dim} to {args.out}")
    return EXIT_OK


def cmd_index(args) -> int:
    from .output_paths import check_output_path, run_inputs

    check_output_path(args.out, inputs={args.data: "the catalogue", **run_inputs(args.run)}, directory=True)
    from .retrieval import build_index

    params = {"m": args.hnsw_m, "ef_construction": args.ef_construction, "ef_search": args.ef_search,
              "nlist": args.nlist, "nprobe": args.nprobe}
    info = build_index(args.run, args.data, args.out, kind=args.kind, head=args.head, id_column=args.id_column,
                       batch_size=args.batch_size, params=params, threads=args.threads)
    if info.note:
        print(f"archspec: {info.note}", file=sys.stderr)
    print(f"indexed {info.count} items ({info.duplicates} duplicate rows dropped), width {info.dim}, "
          f"{info.kind} ({info.backend}) → {info.directory}")
    return EXIT_OK


def cmd_retrieve(args) -> int:
    from .output_paths import PREDICTION_FORMATS, check_output_path, run_inputs

    check_output_path(args.out, inputs={args.data: "the query file", args.index: "the index", **run_inputs(args.run)},
                      kinds=PREDICTION_FORMATS)
    from .retrieval import retrieve

    df = retrieve(args.run, args.index, args.data, args.out, k=args.k, exclude=args.exclude,
                  id_column=args.id_column, batch_size=args.batch_size, threads=args.threads,
                  params={"ef_search": args.ef_search, "nprobe": args.nprobe})
    print(f"wrote {len(df)} hits for {df['query'].nunique()} queries to {args.out}")
    return EXIT_OK


def _track_args(p) -> None:
    p.add_argument("--track", choices=["tensorboard", "mlflow"], action="append",
                   help="log to TensorBoard / MLflow (repeatable; overrides training.tracking)")
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI (default sqlite next to the runs)")


def cmd_sweep(args) -> int:
    from .sweep import run_sweep, show_sweep, sweep_schema

    if args.schema:
        print(json.dumps(sweep_schema(), indent=2))
        return EXIT_OK
    if args.show:
        print(show_sweep(args.show, storage=args.storage))
        return EXIT_OK
    if args.resume is None and (args.file is None or args.config is None):
        print("archspec sweep: give SPEC --config SWEEP.yaml, or --resume DIR, or --show DIR", file=sys.stderr)
        return EXIT_USAGE
    if args.out and args.resume is None:
        from .output_paths import check_output_path

        check_output_path(args.out, inputs={args.file: "the spec file", args.config: "the sweep file"}, directory=True)
    run_sweep(args.file, args.config, out=args.out, resume=args.resume, storage=args.storage,
              track=args.track, tracking_uri=args.tracking_uri)
    return EXIT_OK


def cmd_serve(args) -> int:
    from .server import serve

    serve(args.run, host=args.host, port=args.port, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
          index=args.index)
    return EXIT_OK


def cmd_validate(args) -> int:
    from .pipeline import check_file
    from .datacheck import with_data_checks
    from .load import is_spec_file
    from .params import count_for

    from .hub import online_lookups

    args.files = [*(getattr(args, "data_specs", None) or []), *args.files]
    if not args.files:
        print("usage: archspec validate [options] FILE [FILE ...]\narchspec validate: error: the following "
              "arguments are required: FILE", file=sys.stderr)
        return EXIT_USAGE
    files = [f for f in args.files if not args.only_specs or is_spec_file(f)]
    with online_lookups(args.online):
        results = [check_file(f) for f in files]
    if args.data is not None:
        results = [with_data_checks(r, None if args.data is True else args.data) for r in results]
    diags = [d for r in results for d in r.diagnostics]
    if args.format == "json":
        payload = [{"file": r.file, "valid": r.ok(args.strict),
                    "shapes": {n: s.to_dict() for n, s in r.shapes.items()},
                    "params": count_for(r, args.run).to_dict() if r.graph else None,
                    "diagnostics": [d.to_dict() for d in r.diagnostics]} for r in results]
        print(json.dumps(payload, indent=2))
    elif args.format == "github":
        for d in diags:
            print(render_github(d))
    elif args.format == "sarif":
        from .sarif import render_sarif

        print(render_sarif(results))
    else:
        for r in results:
            for d in r.diagnostics:
                print(d.render())
            if r.ok(args.strict):
                heads = len(r.graph.predictions()) if r.graph else 0
                print(f"{r.file}: ok — {plural(len(r.graph.nodes), 'node')}, {plural(heads, 'prediction')}"
                      + (f", {plural(len(r.warnings), 'warning')}" if r.warnings else ""))
                if args.shapes:
                    params = count_for(r, args.run)
                    width = max([len(str(c)) for c in params.nodes.values() if c.value is not None] or [0])
                    for name in r.graph.order:
                        count = params.nodes.get(name)
                        text = "" if count is None else (f"{str(count):>{width}} params" if count.value is not None
                                                         else f"params deferred: {count.depends}")
                        print(f"  {r.graph.section[name]:8} {name:24} {r.graph.nodes[name].type:14} "
                              f"{str(r.shapes.get(name, '?')):22} {text}".rstrip())
                    print(f"  {params.total_line()}")
        bad = [r for r in results if not r.ok(args.strict)]
        if bad:
            n_err = sum(len(r.errors) for r in results)
            n_warn = sum(len(r.warnings) for r in results)
            print(f"{len(bad)} of {len(results)} specs invalid: {plural(n_err, 'error')}, "
                  f"{plural(n_warn, 'warning')}"
                  + (" (--strict)" if args.strict else ""), file=sys.stderr)
    return EXIT_OK if all(r.ok(args.strict) for r in results) else EXIT_INVALID


def cmd_diff(args) -> int:
    from .diff import run_diff

    code, out, err = run_diff(args.old, args.new, args.format)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


def cmd_schema(args) -> int:
    from .spec import json_schema

    print(json.dumps(json_schema(), indent=2, sort_keys=False))
    return EXIT_OK


def cmd_build(args) -> int:
    from .build_report import run_build

    return run_build(args)


def cmd_train(args) -> int:
    if args.file is None and args.resume is None:
        print("archspec train: give a SPEC, or --resume RUN", file=sys.stderr)
        return EXIT_USAGE
    if args.init_from and args.resume:
        print("archspec train: --init-from starts a new run; --resume continues one — give only one",
              file=sys.stderr)
        return EXIT_USAGE
    if args.out:
        from .output_paths import check_output_path

        check_output_path(args.out, inputs={args.file: "the spec file", args.data: "the data file"}, directory=True)
    several = any(getattr(args, f[2:].replace("-", "_")) is not None for f, _, _ in _TORCHRUN_FLAGS)
    if (args.nproc_per_node > 1 or several) and "WORLD_SIZE" not in __import__("os").environ:
        return _launch_distributed(args)
    from .train import train

    progress = {"auto": None, "bar": True, "lines": False}[args.progress]
    track = {"backends": args.track, "uri": args.tracking_uri} if args.track or args.tracking_uri else None
    train(args.file, data=args.data, out=args.out, resume=args.resume, max_steps=args.max_steps,
          epochs=args.epochs, progress=progress, plot=args.plot, track=track, init_from=args.init_from)
    return EXIT_OK


#: torchrun options `archspec train` passes through, to train on several machines
_TORCHRUN_FLAGS = (
    ("--nnodes", "N", "machines taking part (torchrun --nnodes; default 1)"),
    ("--node-rank", "R", "this machine's rank, 0 … nnodes-1 (torchrun --node-rank)"),
    ("--rdzv-endpoint", "HOST:PORT", "rendezvous address every machine can reach (torchrun --rdzv-endpoint)"),
    ("--rdzv-id", "ID", "a job id shared by the machines of one run (torchrun --rdzv-id)"),
    ("--master-addr", "HOST", "address of the rank-0 machine (torchrun --master-addr; static rendezvous)"),
    ("--master-port", "PORT", "port on the rank-0 machine (torchrun --master-port)"),
)


def _launch_distributed(args) -> int:
    """Re-run this command under torchrun: N local processes, on one machine or several."""
    import subprocess

    ours = {"--nproc-per-node"} | {f for f, _, _ in _TORCHRUN_FLAGS}
    cleaned, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if a in ours:
            skip = True
            continue
        if a.split("=", 1)[0] in ours:
            continue
        cleaned.append(a)
    run = [f"--nproc-per-node={args.nproc_per_node}"]
    passed = {f: getattr(args, f[2:].replace("-", "_")) for f, _, _ in _TORCHRUN_FLAGS}
    if not any(v is not None for v in passed.values()):
        run.insert(0, "--standalone")  # one machine: torchrun picks a free port itself
    elif passed["--rdzv-endpoint"] is not None:
        run.append("--rdzv-backend=c10d")
    run += [f"{f}={v}" for f, v in passed.items() if v is not None]
    cmd = [sys.executable, "-m", "torch.distributed.run", *run, "-m", "archspec", *cleaned]
    return subprocess.call(cmd)


def cmd_evaluate(args) -> int:
    from .output_paths import check_output_path, run_inputs, writing

    if args.out:
        check_output_path(args.out, inputs={args.data: "the data file", **run_inputs(args.run)}, kinds=(".json",))
    if args.catalogue and args.checkpoint != "best":
        print("archspec evaluate: --catalogue evaluates the best checkpoint; leave out --checkpoint", file=sys.stderr)
        return EXIT_USAGE
    from .inference import checkpoint_line, describe_checkpoint, evaluate, format_metrics, metrics_json

    info = describe_checkpoint(args.run, args.checkpoint)
    if args.baseline:
        metrics, base = evaluate(args.run, args.data, baseline=True, checkpoint=args.checkpoint)
    else:
        metrics, base = evaluate(args.run, args.data, checkpoint=args.checkpoint), None
    if args.catalogue:
        from .retrieval import catalogue_metrics

        full, full_base, cat = catalogue_metrics(args.run, args.data, args.catalogue, baseline=args.baseline,
                                                 id_column=args.id_column, exclude_seen=args.exclude_seen,
                                                 query_id_column=args.query_id_column)
        metrics.update(full)
        if base is not None:
            base.update(full_base or {})
        print(f"catalogue: {cat['catalogue_items']} items, {cat['test_rows']} test rows"
              + (f", {cat['not_in_catalogue']} of whose items are not in the catalogue (counted as misses)"
                 if cat["not_in_catalogue"] else "")
              + (f"; {cat['seen_excluded']} training items excluded" if cat["exclude_seen"] else ""),
              file=sys.stderr)
    payload = {"checkpoint": info, "model": metrics, **({"baseline": base} if base is not None else {})}
    if args.format == "json":
        print(metrics_json(payload))
    else:
        print(checkpoint_line(info))
        print(format_metrics(metrics, base))
    if args.out:
        with writing(args.out) as path:
            path.write_text(metrics_json(payload) + "\n")
    return EXIT_OK


def cmd_predict(args) -> int:
    from .output_paths import PREDICTION_FORMATS, check_output_path, run_inputs

    check_output_path(args.out, inputs={args.data: "the data file", **run_inputs(args.run)}, kinds=PREDICTION_FORMATS)
    from .inference import checkpoint_line, describe_checkpoint, predict

    info = describe_checkpoint(args.run, args.checkpoint)
    df = predict(args.run, args.data, args.out, checkpoint=args.checkpoint)
    print(checkpoint_line(info))
    print(f"wrote {plural(len(df), 'row')} × {plural(len(df.columns), 'column')} to {args.out}")
    if args.show > 0:
        from .inference import show_predictions

        print(show_predictions(args.run, args.data, df, args.show))
    return EXIT_OK


def cmd_data(args) -> int:
    from . import datasets

    if args.data_command == "clear-cache":
        from .data.store import clear_cache

        folder, n = clear_cache()
        print(f"removed {n} cached file{'s' if n != 1 else ''} from {folder}")
        return EXIT_OK
    if args.data_command == "list":
        width = max(len(name) for name in datasets.DATASETS)
        for name, ds in datasets.DATASETS.items():
            print(f"{name:{width}}  {ds.summary}")
        return EXIT_OK
    if args.data_command == "prepare":
        from .output_paths import check_output_path

        check_output_path(args.out, directory=True)
        names = list(datasets.DATASETS) if args.names == ["all"] else args.names
        for name in names:
            for path in datasets.prepare(name, args.out):
                print(path)
        return EXIT_OK
    print("archspec data: give an action: list or prepare", file=sys.stderr)
    return EXIT_USAGE


def cmd_fetch(args) -> int:
    from .fetch import fetch

    fetch(args.files, cache_dir=args.cache_dir)
    return EXIT_OK


def cmd_plot(args) -> int:
    from .output_paths import PLOT_FORMATS, check_output_path, run_inputs

    if args.out:
        check_output_path(args.out, inputs=run_inputs(args.run), kinds=PLOT_FORMATS)
    from .plot import plot_run

    print(plot_run(args.run, args.out))
    return EXIT_OK


COMMANDS = {"validate": cmd_validate, "diff": cmd_diff, "schema": cmd_schema, "build": cmd_build, "train": cmd_train,
            "evaluate": cmd_evaluate, "predict": cmd_predict, "embed": cmd_embed, "index": cmd_index,
            "retrieve": cmd_retrieve, "plot": cmd_plot, "data": cmd_data, "sweep": cmd_sweep, "serve": cmd_serve,
            "fetch": cmd_fetch}


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings about the user's data are one ``archspec: warning:`` line; others as Python shows them."""
    from .errors import DataWarning

    if issubclass(category, DataWarning):
        print(f"archspec: warning: {message}", file=sys.stderr)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


def main(argv=None) -> int:
    import warnings

    global _python_showwarning
    if warnings.showwarning is not _show_warning:
        _python_showwarning, warnings.showwarning = warnings.showwarning, _show_warning
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and EXIT_USAGE
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if getattr(args, "offline", False):
        from .hub import go_offline

        go_offline()
    try:
        return COMMANDS[args.command](args)
    except SpecError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_INVALID
    except ArchspecError as exc:
        print(f"archspec: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("archspec: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
