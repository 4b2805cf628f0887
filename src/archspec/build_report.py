"""``archspec build SPEC``: compile a spec and print a summary, a diagram, or export it.

- default: one row per node in topological order (name, section/type, inputs, output shape proven
  by the build's dry run, trainable / frozen parameters), then totals — like Keras'
  ``model.summary()``. ``--format json`` prints the same as JSON.
- ``--graph mermaid|dot``: a diagram drawn from the checked spec; nothing is built and torch is
  not imported (unless ``--export`` is given too).
- ``--export torchscript|onnx|torch_export --out DIR`` (repeatable): see :mod:`archspec.export`.

Torch is imported only once a model is built, so that ``--graph`` stays as light as ``validate``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .errors import EXIT_INVALID, EXIT_OK, EXIT_USAGE

BYTES_PER_PARAM = 4  # float32
COLUMNS = ("Node", "Kind", "Inputs", "Output shape", "Trainable", "Frozen")


def _mb(n_params: int) -> float:
    return n_params * BYTES_PER_PARAM / 2**20


def summarize(model, fitted_from: str | None = None) -> dict:
    """A JSON-able summary of a compiled model: nodes in topological order, and parameter totals.

    Each node: ``name``, ``section``, ``type``, ``inputs`` (node names), ``shape`` (``["B", ...]``,
    as proven by the dry run), ``kind``, ``dtype``, ``trainable`` and ``frozen`` parameter counts,
    and ``bound``: the count assumes the largest vocabulary a fitted tokenizer may learn.
    Totals count every parameter once, even when modules share it; ``totals.bound`` says the total
    is an upper bound (and why, in ``bound_reason``); with ``fitted_from`` (a run whose fitted
    vocabulary sizes the model was built with) the counts are exact, and ``before_fitting`` is the
    bound the spec alone gives.
    """
    from .params import count_params

    checked = model.checked
    static = count_params(checked)
    g = checked.graph
    nodes = []
    for name in g.order:
        shape = model.shapes[name]
        trainable, frozen = model.parameter_counts(name)
        nodes.append({
            "name": name,
            "section": g.section[name],
            "type": g.nodes[name].type,
            "inputs": g.sources(name),
            "shape": ["B", *shape.dims],
            "kind": shape.kind,
            "dtype": shape.dtype,
            "trainable": trainable,
            "frozen": frozen,
            "bound": fitted_from is None and name in static.nodes and static.nodes[name].bound,
        })
    trees = {}
    for n in nodes:
        if n["type"] == "gbdt":  # fitted trees, not torch parameters: their size is shown in trees
            cfg = g.nodes[n["name"]]
            fitted = model.node_module(n["name"]).trees()
            per_round = cfg.label_space()[1] if cfg.task == "multiclass" else 1
            n["trees"] = fitted if fitted else None
            n["max_trees"] = cfg.trees * per_round * cfg.models()
            trees[n["name"]] = n["trees"] if fitted else n["max_trees"]
    params = {id(p): p for p in model.parameters()}.values()
    trainable = sum(p.numel() for p in params if p.requires_grad)
    total = sum(p.numel() for p in params)
    return {
        "file": checked.file,
        "name": checked.spec.name,
        "valid": True,
        "nodes": nodes,
        "predictions": list(model.predictions),
        "totals": {"params": total, "trainable": trainable, "frozen": total - trainable,
                   "size_mb": round(_mb(total), 3),
                   "bound": fitted_from is None and static.total.bound,
                   "bound_reason": static.total.depends if static.total.bound else None,
                   "fitted_from": fitted_from,
                   "before_fitting": static.total.value if fitted_from and static.total.bound else None},
        **({"trees": trees} if trees else {}),
        "diagnostics": [d.to_dict() for d in checked.diagnostics],
    }


_SINGULAR = {"inputs": "input", "encoders": "encoder", "fusions": "fusion", "heads": "head"}


def _rows(summary: dict) -> list[tuple[str, ...]]:
    rows = []
    for n in summary["nodes"]:
        dims = ", ".join("?" if d is None else str(d) for d in n["shape"][1:])
        shape = (f"(B, {dims})" if dims else "(B,)") + f" {n['kind']}"
        le = "≤ " if n.get("bound") else ""
        rows.append((n["name"], f"{_SINGULAR.get(n['section'], n['section'])}/{n['type']}",
                     ", ".join(n["inputs"]) or "-", shape, f"{le * bool(n['trainable'])}{n['trainable']:,}",
                     f"{le * bool(n['frozen'])}{n['frozen']:,}"))
    return rows


def _totals(summary: dict) -> list[str]:
    t = summary["totals"]
    le = "≤ " if t.get("bound") else ""
    total = f"Total params:     {le}{t['params']:,} ({_mb(t['params']):.2f} MB)"
    if t.get("bound"):
        total += (f" — a bound: {t['bound_reason']}; `--run RUN` counts with a trained run's fitted "
                  "vocabulary")
    elif t.get("fitted_from"):
        total += f" with the fitted vocabulary of {t['fitted_from']}"
        if t.get("before_fitting") is not None:
            total += f" (≤ {t['before_fitting']:,} before fitting)"
    return [total,
            f"Trainable params: {le if t['trainable'] else ''}{t['trainable']:,} ({_mb(t['trainable']):.2f} MB)",
            f"Frozen params:    {t['frozen']:,} ({_mb(t['frozen']):.2f} MB)",
            f"Predictions:      {', '.join(summary['predictions'])}"] + _tree_lines(summary)


def _tree_lines(summary: dict) -> list[str]:
    """Gradient-boosted heads: fitted tree counts (a run), else the most ``trees`` allow (a spec)."""
    out = []
    for n in summary["nodes"]:
        if n["type"] == "gbdt":
            size = f"{n['trees']:,} trees (fitted)" if n.get("trees") else f"≤ {n['max_trees']:,} trees (not fitted yet)"
            out.append(f"Trees ({n['name']}): {size}; LightGBM, no torch parameters")
    return out


def render_text(summary: dict) -> str:
    """The summary as a plain aligned table (what is printed when stdout is not a terminal)."""
    rows = _rows(summary)
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    right = {4, 5}

    def line(cells):
        return " " + "  ".join(c.rjust(w) if i in right else c.ljust(w)
                               for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "─" * (sum(widths) + 2 * (len(widths) - 1) + 2)
    out = [f'Model: "{summary["name"]}" ({summary["file"]})', rule, line(COLUMNS), rule.replace("─", "═")]
    out += [line(r) for r in rows]
    out += [rule] + [" " + t for t in _totals(summary)] + [rule]
    return "\n".join(out) + "\n"


def render_rich(summary: dict, console=None) -> None:
    """Print the summary as a ``rich`` table (when stdout is a terminal and rich is installed)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f'Model: "{summary["name"]}" ({summary["file"]})', title_justify="left")
    for i, c in enumerate(COLUMNS):
        table.add_column(c, justify="right" if i >= 4 else "left", no_wrap=i != 2)
    for r in _rows(summary):
        table.add_row(*r)
    console.print(table)
    for t in _totals(summary):
        console.print(" " + t, highlight=False)


def _use_rich() -> bool:
    if not sys.stdout.isatty():
        return False
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _print_invalid(checked, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps({"file": checked.file, "valid": False,
                          "diagnostics": [d.to_dict() for d in checked.diagnostics]}, indent=2))
    else:
        for d in checked.diagnostics:
            print(d.render(), file=sys.stderr)
        n_err, n_warn = len(checked.errors), len(checked.warnings)
        print(f"{checked.file}: invalid — {n_err} error{'s' * (n_err != 1)}, {n_warn} warning{'s' * (n_warn != 1)}",
              file=sys.stderr)


class _FittedSizes:
    """The vocabulary sizes a run fitted, in the shape ``compile_spec`` asks a preprocessor for them."""

    def __init__(self, sizes: dict):
        self.sizes = dict(sizes)

    def vocab_size(self, input_name: str) -> int:
        return self.sizes[input_name]  # KeyError: not a text input of the run (the spec's size is used)


def run_build(args) -> int:
    """Run ``archspec build`` (``args`` from the CLI parser); returns the exit code.

    Raises:
        BuildError: a component cannot be built, or an export fails.
        ShapeError: the dry run disagrees with the checker.
    """
    from .pipeline import check_file

    if args.export and not args.out:
        print("archspec build: --export needs --out DIR", file=sys.stderr)
        return EXIT_USAGE
    if args.out:
        from .output_paths import check_output_path, run_inputs

        inputs = run_inputs(args.file) if Path(args.file).is_dir() else {args.file: "the spec file"}
        check_output_path(args.out, inputs=inputs, directory=True)
    trained = pre = fitted_from = None
    if Path(args.file).is_dir():  # a run directory: its own spec, trained weights and preprocessing
        from .inference import load_run

        trained, pre, checked = load_run(args.file)
        fitted_from = str(args.file)
    else:
        checked = check_file(args.file)
    if not checked.ok():
        _print_invalid(checked, args.format)
        return EXIT_INVALID
    if args.format == "text" or args.graph:
        for d in checked.warnings:
            print(d.render(), file=sys.stderr)

    if args.graph:
        from .diagram import FORMATS, render

        text = render(checked, args.graph)
        if args.out:
            from .output_paths import writing

            path = Path(args.out) / f"{checked.spec.name}{FORMATS[args.graph]}"
            with writing(path):
                path.write_text(text)
            print(f"wrote {path}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        if not args.export:
            return EXIT_OK

    from .build import compile_spec

    fitted = None
    if trained is None and getattr(args, "run", None):
        from .params import fitted_sizes

        fitted, fitted_from = _FittedSizes(fitted_sizes(args.run)), str(args.run)
    model = trained if trained is not None else compile_spec(checked, preprocessor=fitted)
    summary = summarize(model, fitted_from)
    show = not args.graph
    if show and args.format == "text":
        if _use_rich():
            render_rich(summary)
        else:
            sys.stdout.write(render_text(summary))
        sys.stdout.flush()
    if args.export:
        from .export import export
        from .output_paths import writing

        run = None
        if trained is not None:
            from .retrieval import run_fingerprint

            run = run_fingerprint(args.file)
        with writing(Path(args.out) / "."):
            result = export(model, args.out, args.export, preprocessor=pre, run=run)
        summary["exports"] = {"manifest": str(result.manifest_path), "files": [str(p) for p in result.files]}
        if args.format == "text" or not show:
            for p in result.files + [result.manifest_path]:
                print(f"wrote {p}", file=sys.stderr)
    if show and args.format == "json":
        print(json.dumps(summary, indent=2))
    return EXIT_OK
