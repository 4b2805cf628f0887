"""Stage 6: compile a checked spec into a :class:`~archspec.nn.model.CompiledModel` and its loss.

Nodes are built in topological order. Each node is dry-run on a tiny batch right after it is
built, which proves the checker's inferred shape (or fills in a deferred width) before any
downstream builder sizes its layers from it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from . import nn as _nn  # noqa: F401  (registers the builders)
from .errors import BuildError, ShapeError
from .pipeline import Checked, load_spec
from .registry import REGISTRIES, SECTION_KINDS, load_plugins
from .shapes import FEATURES, SEQUENCE, TOKENS, Shape


class BuildContext:
    """What builders may ask about the rest of the graph."""

    def __init__(self, checked: Checked, vocab: dict, weights_from_run=None):
        self.checked = checked
        self.graph = checked.graph
        self.vocab = vocab
        self.base_dir = checked.base_dir or Path.cwd()
        #: a run whose checkpoint gives every weight: builders skip pretrained weights (nothing downloaded)
        self.weights_from_run = Path(weights_from_run) if weights_from_run else None
        self.current = None  # the node being built

    def saved_config(self, name: str | None = None) -> Path | None:
        """The transformers config a run saved for node ``name`` (default: the node being built)."""
        if self.weights_from_run is None:
            return None
        folder = self.weights_from_run / "pretrained" / (name or self.current or "")
        return folder if (folder / "config.json").is_file() else None

    def node(self, name: str):
        return self.graph.nodes[name]

    def width(self, shape: Shape) -> int:
        if shape.width is None:
            raise BuildError(f"width of {shape} unknown at build time")
        return shape.width

    def resolve_path(self, p: str) -> Path:
        path = Path(p).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)

    def cardinality(self, input_name: str) -> int:
        return self.vocab.get(input_name) or self.node(input_name).cardinality

    def vocab_size(self, input_name: str) -> int:
        if input_name in self.vocab:
            return self.vocab[input_name]
        tok = self.node(input_name).tokenizer
        if isinstance(getattr(tok, "vocab_size", None), int):
            return tok.vocab_size
        if tok.type != "pretrained":
            raise BuildError(f"input '{input_name}': the vocabulary of a `{tok.type}` tokenizer is known only once "
                             "it is fitted on data — train the spec, or give the encoder a `vocab_size`")
        from .data.text import PretrainedText  # one loader: downloads on first use, offline-exact

        return PretrainedText.from_name(tok.name, self.base_dir, 1, node=f"inputs.{input_name}").vocab_size

    def prediction_kind(self, name: str) -> str:
        from .graph import prediction_kind

        return prediction_kind(self.graph, name)

    def prediction_threshold(self, name: str) -> float | None:
        from .graph import prediction_threshold

        return prediction_threshold(self.graph, name)


def _vocab_sizes(checked: Checked, preprocessor) -> dict:
    vocab = {}
    for name, cfg in checked.spec.inputs.items():
        if preprocessor is not None:
            with contextlib.suppress(KeyError):  # LookupFailed: this input has no vocabulary
                vocab[name] = preprocessor.vocab_size(name)
                continue
        if cfg.type == "categorical":
            vocab[name] = cfg.cardinality
        elif cfg.type == "text" and cfg.tokenizer.type in ("wordpiece", "whitespace"):
            vocab[name] = cfg.tokenizer.vocab_size
    return vocab


def _id_ranges(checked: Checked, ctx: BuildContext | None = None) -> dict:
    """Vocabulary of the transformer reading each text input, from its config (torch-free): the
    ids of example batches must fit the model's embedding, even when the tokenizer's size is unknown."""
    from . import hub
    from .spec import hf

    out = {}
    for name, cfg in checked.spec.encoders.items():
        if getattr(cfg, "type", None) != "transformer":
            continue
        conf = dict(cfg.config or {})
        saved = ctx.saved_config(name) if ctx is not None else None
        if saved is not None:
            conf = hf.read_config(saved / "config.json") or conf
        elif cfg.pretrained:
            path, where = hf.find_config(cfg.pretrained, checked.base_dir)
            if where == "unknown" and not hub.offline():
                # a hub model built for the first time: its config.json now (the build downloads it anyway)
                path, _ = hub.fetch_config(cfg.pretrained)
                where = "cache" if path is not None else where
            if where in ("local", "cache"):
                conf = {**(hf.read_config(path) or {}), **conf}
        size = conf.get("vocab_size")
        if isinstance(size, int) and not isinstance(size, bool) and size > 1:
            out[cfg.input] = min(size, out.get(cfg.input, size))
    return out


def _same(actual: tuple, inferred: tuple) -> bool:
    return len(actual) == len(inferred) and all(i is None or a == i for a, i in zip(actual, inferred))


def compile_spec(source, *, seed: int | None = None, preprocessor=None, dry_run: bool = True,
                 weights_from_run=None):
    """Compile a spec into a model.

    Args:
        source: a spec path, YAML text, or a :class:`~archspec.pipeline.Checked`.
        seed: seeds parameter initialisation (defaults to ``training.seed``).
        preprocessor: fitted preprocessing (gives real vocabulary sizes), optional.
        dry_run: run every node on a tiny batch to prove the inferred shapes (always on by default).
        weights_from_run: a run directory whose checkpoint will give every weight: pretrained weights
            are neither loaded nor downloaded, and a pretrained transformer is built from the config
            the run saved (``RUN/pretrained/<node>/config.json``), so a run needs no model cache.

    Returns:
        the :class:`~archspec.nn.model.CompiledModel`; its loss is ``archspec.build.compile_loss(model)``.

    Raises:
        SpecError: the spec is invalid.
        BuildError: a component cannot be built (e.g. model files missing).
        ShapeError: a node's output differs from the inferred shape.

    Example:
        >>> m = compile_spec("archspec: 1\\nname: m\\ninputs: {x: {type: numeric, columns: [a, b]}}\\n"
        ...                  "heads: {y: {type: regression, from: x}}\\n")
        >>> m(m.example_batch())["y"].shape
        torch.Size([2, 1])
    """
    from .nn.model import CompiledModel

    load_plugins()
    checked = load_spec(source)
    g = checked.graph
    seed = checked.spec.training.seed if seed is None else seed
    torch.manual_seed(seed)
    vocab = _vocab_sizes(checked, preprocessor)
    ctx = BuildContext(checked, vocab, weights_from_run)
    inputs = {n: checked.shapes[n] for n in g.order if g.section[n] == "inputs"}
    # a head of another run (`type: run`) reads that run's output, which the data path feeds in
    inputs.update({n + ".member": checked.shapes[n] for n in g.order if getattr(g.nodes[n], "type", None) == "run"})

    # tiny batch flowing through the graph as we build
    probe = CompiledModel([], {}, {}, [], {}, [], inputs, {}, {})
    probe.vocab = {**_id_ranges(checked, ctx), **vocab}
    values = probe.example_batch(2) if dry_run else {}
    shapes = dict(inputs)

    modules, plan, similarity, frozen = {}, [], {}, []
    task_keys = {n: tuple(f"{n}.{t}" for t in cfg.task_outputs) for n, cfg in g.nodes.items()
                 if getattr(cfg, "task_outputs", None)}
    for name in g.order:
        section = g.section[name]
        if section == "inputs":
            continue
        cfg = g.nodes[name]
        srcs = g.sources(name)  # node names, or `node.task` for one task output of an mmoe
        in_shapes = [shapes[s] for s in srcs]
        builder = REGISTRIES[SECTION_KINDS[section]].builders.get(cfg.type)
        if builder is None:
            raise BuildError(f"{section}.{name}: no builder registered for type '{cfg.type}'")
        try:
            ctx.current = name
            module = builder(cfg, in_shapes, ctx)
        except BuildError as exc:
            raise BuildError(f"{section}.{name}: {exc}") from None
        args = []
        for s in srcs:
            args.append(s)
            if shapes[s].kind in (TOKENS, SEQUENCE):  # a sequence travels with its padding mask
                args.append(s + ".mask")
        if cfg.type == "run":
            args = [name + ".member"]
        plan.append((name, section, args))
        modules[name] = module
        if cfg.type == "similarity":
            similarity[name] = (cfg.query, cfg.candidate)
        if section == "encoders" and not cfg.trainable:
            frozen.append(name)
        inferred = checked.shapes[name]
        if dry_run:
            module.eval()
            with torch.no_grad():
                try:
                    out = module(*[values[a] for a in args])
                except Exception as exc:  # noqa: BLE001 - report which node failed, with the cause
                    raise ShapeError(f"{section}.{name} ({cfg.type}) failed on a dry run with inputs "
                                     f"{[str(shapes[s]) for s in srcs]}: {exc}") from exc
            values[name] = out
            actual = tuple(out.shape[1:])
            if not _same(actual, inferred.dims):
                raise ShapeError(f"{section}.{name} ({cfg.type}) outputs (B, {', '.join(map(str, actual))}) but "
                                 f"the checker inferred {inferred.batch_shape()} — this is a bug in the "
                                 f"'{cfg.type}' component; please report it")
            shapes[name] = Shape(inferred.kind, actual, inferred.dtype, inferred.range)
            values.update(CompiledModel.derived_values(name, out, args, values, task_keys.get(name, ())))
        else:
            shapes[name] = inferred
        for task in getattr(cfg, "task_outputs", None) or ():
            shapes[f"{name}.{task}"] = Shape(FEATURES, shapes[name].dims[1:])
        module.train()

    model = CompiledModel(plan, modules, dict(g.section), g.predictions(), similarity, frozen, inputs,
                          dict(g.nodes), shapes)
    model.vocab = probe.vocab
    model.task_keys = task_keys
    model.checked = checked
    model.train()
    return model


def compile_loss(model):
    """The loss of a compiled model: ``loss(outputs, targets) -> (total, per_head)``."""
    from .nn.losses import build_loss

    return build_loss(model)
