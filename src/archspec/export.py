"""Export a compiled model to TorchScript, ONNX or ``torch.export`` (.pt2), with a dynamic batch.

Exporters want positional tensors, not the dict a :class:`~archspec.nn.model.CompiledModel`
takes, so the model is wrapped in a :class:`FlatModel`: positional tensors in
``model.input_keys()`` order, a tuple out in prediction order. archspec knows every input's name,
dtype and which dimension is the batch, so it generates the example inputs and the dynamic shapes
itself, and writes them down in a manifest (``<name>.export.json``) next to the files.

For a two-tower model each tower of a similarity head is exported on its own as well
(``<name>.<head>.query.*`` / ``<name>.<head>.candidate.*``): serving runs the candidate tower
offline over the catalogue and the query tower online, and the manifest records the metric the
model was trained with, so the nearest-neighbour index uses the same one.

Every file is loaded back and checked against the eager model on a batch of another size before
the manifest is written.

Gradient-boosted heads (``type: gbdt``) are LightGBM trees, not torch operations, so no torch
exporter can trace them. The ``onnx`` format carries them anyway: each head's boosters are
converted by LightGBM's ONNX converter (onnxmltools; ``ai.onnx.ml`` tree ensembles) into a file of
its own, ``<name>.<head>.gbdt.onnx`` (preprocessed features in, the trees' raw scores out, exactly
what the torch head returns), and the neural graph takes those scores as an input
(``<head>.gbdt``), so every late fusion over them (weights, vote, learned weights) is computed
inside the neural graph by the same torch code that trained and evaluated it, never re-implemented
by hand. Likewise a member of another run (``type: run``) is exported, with its own preprocessing,
into ``members/<head>/`` and the fused graph takes its output as the input ``<head>.member``.
The manifest says which file feeds which input and how its features are made from raw rows, and
:mod:`archspec.serving` composes them. Separate files rather than one graph merged with
``onnx.compose``: the converter emits ai.onnx.ml opset 1 / default opset 9 graphs and the torch
exporter opset 18, value names would have to be made disjoint, and the trees need the
*preprocessed* inputs while the neural graph takes raw ones; kept apart, a member (a tree file,
a member run's export) can also be replaced without touching the rest, which is the point of
late fusion. torchscript and torch_export cannot carry either kind of head and refuse to.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .errors import BuildError
from .shapes import TOKENS

FORMATS = ("torchscript", "onnx", "torch_export")
SUFFIX = {"torchscript": ".torchscript.pt", "onnx": ".onnx", "torch_export": ".pt2"}
BATCH = "batch"
EXAMPLE_BATCH = 2  # traced / exported with this batch size ...
CHECK_BATCH = 3  # ... and checked on another one (a baked-in batch size fails the check)

# ANN index settings that reproduce the similarity the model was trained with.
INDEX = {
    "cosine": {"normalize": "l2", "metric": "inner_product"},
    "dot": {"normalize": None, "metric": "inner_product"},
    "euclidean": {"normalize": None, "metric": "l2"},
}


class ExportError(BuildError):
    """A model could not be exported, or its export does not reproduce the eager model."""


class FlatModel(nn.Module):
    """A model (or tower) taking positional tensors and returning a tuple.

    Args:
        module: takes a batch dict; returns a dict (``outputs`` names its keys to return, in
            order) or a single tensor (``outputs`` is ``None``; returned as a 1-tuple).
        keys: batch keys of the positional arguments, in order.
        outputs: keys of the returned dict to return, in order.
    """

    def __init__(self, module: nn.Module, keys: list[str], outputs: list[str] | None = None):
        super().__init__()
        self.module = module
        self.keys = list(keys)
        self.outputs = None if outputs is None else list(outputs)

    def forward(self, *tensors: torch.Tensor) -> tuple:
        out = self.module(dict(zip(self.keys, tensors)))
        if self.outputs is None:
            return (out,)
        return tuple(out[k] for k in self.outputs)


def output_names(model) -> list[str]:
    """The keys of ``model(batch)`` in order: predictions, then each similarity head's embeddings."""
    names = list(model.predictions)
    for head in model.similarity:
        names += [head + ".query", head + ".candidate"]
    return names


def flat_model(model) -> FlatModel:
    """The whole model as a :class:`FlatModel` (inputs ``model.input_keys()``, outputs :func:`output_names`)."""
    return FlatModel(model, model.input_keys(), output_names(model))


class SubGraph(nn.Module):
    """The part of a model that computes one node, holding only the modules it needs (so a tower's
    export carries its own weights, not the other tower's); ``forward(batch) -> (B, D)``."""

    def __init__(self, model, node: str):
        super().__init__()
        need, plan = {node}, []
        for name, section, args in reversed(model.plan):
            if name in need:
                plan.append((name, list(args)))
                need.update(a[:-5] if a.endswith(".mask") else a for a in args)
        self.plan = list(reversed(plan))
        self.nodes = nn.ModuleDict({name: model.node_module(name) for name, _ in self.plan})
        self.node = node

    def forward(self, batch: dict) -> torch.Tensor:
        values = dict(batch)
        for name, args in self.plan:
            values[name] = self.nodes[name](*[values[a] for a in args])
        return values[self.node]


def flat_tower(model, head: str, side: str) -> FlatModel:
    """One tower (``query`` or ``candidate``) of a similarity head, reading only its own inputs and
    holding only its own weights (same values as ``model.tower(head, side)``)."""
    node = model.similarity[head][0 if side == "query" else 1]
    return FlatModel(SubGraph(model, node), model.input_keys([node]))


class RawInputs(nn.Module):
    """A flat model that takes raw values where the fitted transform is tensor math: numeric inputs
    as float64 raw values, standardised inside (``(x - shift) / scale``, as the run's preprocessing
    does, in float64); categorical inputs whose categories are integers as the raw integer,
    looked up inside (category ``vocabulary[i]`` → index ``i + 1``, anything else → 0). Other
    inputs pass through (tokens, pixels, string categories: :mod:`archspec.serving` prepares them).

    Args:
        flat: the :class:`FlatModel` to feed.
        numeric: batch key → ``(shift, scale)`` lists.
        categories: batch key → the integer categories in index order.
    """

    def __init__(self, flat: FlatModel, numeric: dict, categories: dict):
        super().__init__()
        self.flat = flat
        self.keys = list(flat.keys)
        self.ops = []
        for pos, key in enumerate(self.keys):
            if key in numeric:
                shift, scale = numeric[key]
                self.register_buffer(f"shift{pos}", torch.tensor(shift, dtype=torch.float64))
                self.register_buffer(f"scale{pos}", torch.tensor(scale, dtype=torch.float64))
                self.ops.append("numeric")
            elif key in categories:
                self.register_buffer(f"codes{pos}", torch.tensor(categories[key], dtype=torch.int64))
                self.register_buffer(f"index{pos}", torch.arange(1, len(categories[key]) + 1, dtype=torch.int64))
                self.ops.append("lookup")
            else:
                self.ops.append("")

    def forward(self, *tensors: torch.Tensor) -> tuple:
        xs = []
        for pos, (op, x) in enumerate(zip(self.ops, tensors)):
            if op == "numeric":
                x = ((x - getattr(self, f"shift{pos}")) / getattr(self, f"scale{pos}")).float()  # (B, n)
            elif op == "lookup":
                hit = x.unsqueeze(-1) == getattr(self, f"codes{pos}")  # (B, V): at most one True per row
                x = (hit.long() * getattr(self, f"index{pos}")).sum(-1)  # (B,), 0 = unseen
            xs.append(x)
        return self.flat(*xs)

    def to_raw(self, tensors: tuple) -> tuple:
        """Raw values that this module turns into ``tensors`` (for example and check inputs)."""
        out = []
        for pos, (op, x) in enumerate(zip(self.ops, tensors)):
            if op == "numeric":
                x = x.double() * getattr(self, f"scale{pos}") + getattr(self, f"shift{pos}")
            elif op == "lookup":
                codes = getattr(self, f"codes{pos}")
                unseen = (codes.min() - 1) if len(codes) else torch.tensor(-1)
                x = torch.where(x > 0, codes[(x - 1).clamp(0, max(len(codes) - 1, 0))], unseen)
            out.append(x)
        return tuple(out)


def _int_codes(vocabulary: list[str]) -> list[int] | None:
    """The categories as int64 values when every one is an integer (ids), else ``None``."""
    try:
        codes = [int(v) for v in vocabulary]
    except ValueError:
        return None
    if any(str(c) != v or not -(2**62) < c < 2**62 for c, v in zip(codes, vocabulary)):
        return None
    return codes


def _in_graph(model, preprocessor) -> tuple[dict, dict]:
    """``(numeric, categories)`` transforms that go inside the exported graph, by batch key."""
    if preprocessor is None:
        return {}, {}
    state = preprocessor.state_dict()["inputs"]
    numeric, categories = {}, {}
    for name, st in state.items():
        if name not in model.inputs:
            continue
        if st["type"] == "numeric":
            numeric[name] = (st["shift"], st["scale"])
        elif st["type"] == "categorical":
            codes = _int_codes(st["vocabulary"])
            if codes is not None:
                categories[name] = codes
    return numeric, categories


def _raw(flat: FlatModel, transforms: tuple[dict, dict]) -> nn.Module:
    numeric, categories = transforms
    if not any(k in numeric or k in categories for k in flat.keys):
        return flat
    return RawInputs(flat, numeric, categories).eval()


@dataclass
class Target:
    """One thing to export: a flat module and what the manifest says about it."""

    stem: str  # file name without suffix, e.g. "two_tower.match.query"
    module: FlatModel
    inputs: list[dict]
    outputs: list[dict]
    files: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------- manifest


PREPROCESS_DIR = "preprocess"


def _input_specs(model, keys: list[str], preprocessor=None, transforms=({}, {})) -> list[dict]:
    out = []
    for key in keys:
        if key.endswith((".gbdt", ".member")):  # a value computed outside this graph (see the docstring)
            shape = model.inputs[key]
            head, what = key.rsplit(".", 1)
            out.append({"name": key, "dtype": shape.dtype, "shape": [BATCH, *shape.dims], "kind": shape.kind,
                        "expects": f"the raw scores of gbdt['{head}'] (its trees' ONNX file)" if what == "gbdt"
                        else f"output '{head}' of members['{head}'] (the member run's export)",
                        "transform": {"runtime": what, "head": head}})
            continue
        base, mask = (key[:-5], True) if key.endswith(".mask") else (key, False)
        shape = model.inputs[base]
        spec = {
            "name": key,
            "dtype": "int64" if mask else shape.dtype,
            "shape": [BATCH, *shape.dims],
            "kind": "attention_mask" if mask else shape.kind,
            **({"mask": key + ".mask"} if shape.kind == TOKENS and not mask else {}),
        }
        if preprocessor is not None:
            spec.update(_expects(model, base, mask, preprocessor, transforms))
        out.append(spec)
    return out


def _expects(model, name: str, mask: bool, preprocessor, transforms) -> dict:
    """What a user feeds this input of the export, and how it is made from a raw row (the manifest's
    ``expects`` and ``transform``)."""
    cfg = preprocessor.checked.spec.inputs[name]
    state = preprocessor.state_dict()["inputs"][name]
    numeric, categories = transforms
    where = f"{PREPROCESS_DIR}/preprocessor.json#inputs.{name}"
    if cfg.type == "numeric":
        return {"dtype": "float64", "expects": "raw values", "columns": list(cfg.columns),
                "transform": {"in_graph": "(x - shift) / scale", "normalize": cfg.normalize,
                              "shift": state["shift"], "scale": state["scale"]}}
    if cfg.type == "categorical":
        if name in categories:
            return {"expects": "raw values (integer categories)", "column": cfg.column,
                    "transform": {"in_graph": "category vocabulary[i] -> index i + 1; any other value -> 0",
                                  "vocabulary": where + ".vocabulary", "size": len(state["vocabulary"])}}
        return {"expects": "category index", "column": cfg.column,
                "transform": {"runtime": "category vocabulary[i] -> index i + 1; unseen or missing -> 0 "
                                         "(values matched as text: 1, 1.0 and '1' are '1'; strings stripped)",
                              "vocabulary": where + ".vocabulary"}}
    if cfg.type == "text":
        tok = f"{PREPROCESS_DIR}/tokenizers/{name}/tokenizer.json"
        what = "attention mask (1 = token, 0 = padding)" if mask else "token ids"
        return {"expects": what, "column": cfg.column,
                "transform": {"runtime": "tokenize", "tokenizer": tok, "kind": state.get("tokenizer"),
                              "max_length": cfg.max_length, "pad_id": state.get("pad_id"),
                              "missing": "empty text", "padding": "to max_length", "truncation": True}}
    if cfg.type == "image":
        from .data.images import IMAGENET_MEAN, IMAGENET_MEAN_GRAY, IMAGENET_STD, IMAGENET_STD_GRAY

        rgb = cfg.channels == 3
        return {"expects": "pixels (channels, height, width), float32", "column": cfg.column,
                "transform": {"runtime": "image", "decode": "Pillow, converted to " + ("RGB" if rgb else "L"),
                              "size": list(cfg.size), "resize": "bilinear", "channels": cfg.channels,
                              "normalize": cfg.normalize,
                              "mean": list(IMAGENET_MEAN if rgb else IMAGENET_MEAN_GRAY),
                              "std": list(IMAGENET_STD if rgb else IMAGENET_STD_GRAY),
                              "paths": "relative to the data file's directory"}}
    if cfg.type == "audio":
        return {"expects": "waveform (samples,), float32, mono", "column": cfg.column,
                "transform": {"runtime": "audio", "decode": "soundfile; channels averaged; polyphase resampling",
                              "sample_rate": cfg.sample_rate, "samples": cfg.samples, "crop": cfg.crop,
                              "paths": "relative to the data file's directory"}}
    if cfg.type == "vector":
        return {"expects": "raw values", "column": cfg.column, "width": cfg.width,
                "transform": {"runtime": f"a list of {cfg.width} numbers per row (or columns "
                                         f"{cfg.column}_0 ... {cfg.column}_{cfg.width - 1})"}}
    return {}


def _output_specs(model) -> list[dict]:
    from .graph import label_space, output_activation, prediction_kind, prediction_threshold
    from .prediction_kinds import kind_home

    checked = getattr(model, "checked", None)
    graph = checked.graph if checked is not None else None
    out = []
    for name in output_names(model):
        if name in model.shapes:
            shape = model.shapes[name]
            spec = {"name": name, "kind": shape.kind, "dtype": shape.dtype, "shape": [BATCH, *shape.dims]}
            if graph is not None:
                task = prediction_kind(graph, name)
                home = kind_home(task)
                space, target = label_space(graph, name)
                cfg = graph.nodes[name]
                spec["node"] = f"{graph.section[name]}.{name}"
                spec["task"] = task
                spec["meaning"] = home.meaning
                spec["target"] = target
                if space is not None:
                    spec["labels"] = space[2] if space[2] is not None else space[1]
                if prediction_threshold(graph, name) is not None:
                    spec["threshold"] = prediction_threshold(graph, name)
                spec["activation"] = home.export_activation(cfg, shape, output_activation(graph, name))
        else:  # a similarity head's tower embedding, "<head>.query" / "<head>.candidate"
            head, side = name.rsplit(".", 1)
            node = model.similarity[head][0 if side == "query" else 1]
            shape = model.shapes[node]
            spec = {"name": name, "kind": "embedding", "dtype": shape.dtype, "shape": [BATCH, *shape.dims],
                    "node": f"{model.sections[node]}.{node}"}
        out.append(spec)
    return out


def _similarity_spec(model, head: str) -> dict:
    module = model.node_module(head)
    metric = module.metric
    calib = {"temperature": module.temperature}
    if module.scale is not None:
        calib.update(scale=float(module.scale.detach()), bias=float(module.bias.detach()))
    formula = {"cosine": "cos(q, c)", "dot": "q · c", "euclidean": "-‖q - c‖"}[metric]
    if module.temperature is not None:
        formula = f"{formula} / temperature"
    if module.scale is not None:
        formula = f"scale * {formula} + bias"
    return {"metric": metric, "index": INDEX[metric], "score": formula, **calib}


def _manifest(model, name: str, targets: list[Target], formats: list[str], out_dir: Path) -> dict:
    main, towers = targets[0], targets[1:]
    checked = getattr(model, "checked", None)
    manifest = {
        "archspec": __version__,
        "torch": torch.__version__,
        "name": name,
        "spec": str(checked.file) if checked is not None else None,
        "batch_dim": BATCH,
        "example_batch_size": EXAMPLE_BATCH,
        "formats": list(formats),
        "inputs": main.inputs,
        "outputs": main.outputs,
        "files": {f: os.path.relpath(p, out_dir) for f, p in main.files.items()},
    }
    if model.similarity:
        sims = {}
        for head in model.similarity:
            entry = _similarity_spec(model, head)
            for t in towers:
                if t.stem.startswith(f"{name}.{head}."):
                    side = t.stem.rsplit(".", 1)[1]
                    entry[side] = {"node": model.similarity[head][0 if side == "query" else 1],
                                   "inputs": t.inputs, "outputs": t.outputs,
                                   "files": {f: os.path.relpath(p, out_dir) for f, p in t.files.items()}}
            sims[head] = entry
        manifest["similarity"] = sims
    return manifest


def _targets(model, name: str, preprocessor=None) -> list[Target]:
    tf = _in_graph(model, preprocessor)
    targets = [Target(name, _raw(flat_model(model).eval(), tf),
                      _input_specs(model, model.input_keys(), preprocessor, tf), _output_specs(model))]
    for head, (q, c) in model.similarity.items():
        for side, node in (("query", q), ("candidate", c)):
            flat = flat_tower(model, head, side).eval()
            shape = model.shapes[node]
            targets.append(Target(f"{name}.{head}.{side}", _raw(flat, tf),
                                  _input_specs(model, flat.keys, preprocessor, tf),
                                  # not plain "embedding": the ONNX exporter does not rename an output
                                  # that collides with an internal value (e.g. an nn.Embedding's)
                                  [{"name": f"{head}.{side}", "kind": "embedding", "dtype": shape.dtype,
                                    "shape": [BATCH, *shape.dims], "node": f"{model.sections[node]}.{node}"}]))
    return targets


# ------------------------------------------------------------------------------------------ inputs


def _varied_masks(batch: dict) -> dict:
    """Give each row of every attention mask a different amount of padding (at least one token kept),
    so a check also covers masks unlike the example's."""
    out = dict(batch)
    for key, mask in batch.items():
        if key.endswith(".mask") and mask.dim() == 2:
            mask = torch.ones_like(mask)
            n, t = mask.shape
            for row in range(n):
                keep = max(1, t - (row * t) // max(n, 1))
                mask[row, keep:] = 0
            out[key] = mask
    return out


def example_args(model, keys: list[str], batch_size: int = EXAMPLE_BATCH, seed: int = 0, module=None) -> tuple:
    """Positional example tensors for ``keys``, from ``model.example_batch`` (as raw values when
    ``module`` is a :class:`RawInputs`)."""
    batch = model.example_batch(batch_size, seed=seed)
    if seed:
        batch = _varied_masks(batch)
    args = tuple(batch[k] for k in keys)
    return module.to_raw(args) if isinstance(module, RawInputs) else args


# --------------------------------------------------------------------------------------- exporters


@contextlib.contextmanager
def _quiet():
    """Silence exporter chatter that is not ours to act on (every export is checked numerically
    afterwards, which is what the tracer warnings ask for)."""
    logger = logging.getLogger("onnxscript")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit is deprecated
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*")
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def _dynamic(keys: list[str]):
    from torch.export import Dim

    batch = Dim(BATCH)
    # one entry for the var-positional `*tensors`, holding one spec per tensor
    return (tuple({0: batch} for _ in keys),)


def _export_torchscript(flat: FlatModel, args: tuple, check: tuple, path: Path) -> None:
    traced = torch.jit.trace(flat, args, check_inputs=[check])
    torch.jit.save(traced, str(path))


def _export_torch_export(flat: FlatModel, args: tuple, check: tuple, path: Path) -> None:
    program = torch.export.export(flat, args, dynamic_shapes=_dynamic(flat.keys))
    torch.export.save(program, str(path))


def _rename_io(path: Path, inputs: list[str], outputs: list[str]) -> None:
    """Give the graph's inputs and outputs their final names. The exporter names internal values
    after the ops that make them (``cat``, ``linear``, ...), so a node named like an op would break
    the graph's single assignment if it were exported under its own name: export under neutral names,
    move any internal value that holds a final name out of the way, then rename."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    g = model.graph
    final = dict(zip([i.name for i in g.input], inputs)) | dict(zip([o.name for o in g.output], outputs))
    taken = set(final.values())
    moved = {}
    for node in g.node:
        for name in node.output:
            if name in taken and name not in final:
                moved[name] = f"{name}__{len(moved)}"
    for v in g.initializer:
        if v.name in taken and v.name not in final:
            moved[v.name] = f"{v.name}__{len(moved)}"
    rename = {**moved, **final}

    def fix(seq):
        for i, name in enumerate(seq):
            if name in rename:
                seq[i] = rename[name]

    for node in g.node:
        fix(node.input)
        fix(node.output)
    for coll in (g.input, g.output, g.value_info, g.initializer):
        for v in coll:
            if v.name in rename:
                v.name = rename[v.name]
    onnx.save(model, str(path))


def _export_onnx(flat: FlatModel, args: tuple, check: tuple, path: Path, output: list[str]) -> None:
    n_bytes = sum(p.numel() * p.element_size() for p in flat.parameters())
    neutral_in = [f"archspec_input_{i}" for i in range(len(flat.keys))]
    neutral_out = [f"archspec_output_{i}" for i in range(len(output))]
    torch.onnx.export(flat, args, str(path), dynamo=True, input_names=neutral_in, output_names=neutral_out,
                      dynamic_shapes=_dynamic(flat.keys), verbose=False,
                      external_data=n_bytes > 1.5 * 2**30)  # a protobuf holds at most 2 GiB
    import onnx

    _rename_io(path, list(flat.keys), list(output))
    onnx.checker.check_model(str(path))
    graph = onnx.load(str(path), load_external_data=False).graph
    names = ([i.name for i in graph.input], [o.name for o in graph.output])
    if names != (flat.keys, output):  # the exporter may drop or rename a value; serving goes by name
        raise ExportError(f"the ONNX graph's inputs/outputs {names} are not the expected {(flat.keys, output)}")


def load(path, fmt: str | None = None):
    """Load an exported file back as a callable ``f(*tensors) -> tuple of tensors``.

    ONNX files need ``onnxruntime`` (or fall back to ``onnx.reference``, which is slow and does not
    run every model).
    """
    path = Path(path)
    fmt = fmt or next(f for f, s in SUFFIX.items() if path.name.endswith(s))
    if fmt == "torchscript":
        with _quiet():
            module = torch.jit.load(str(path))
        return lambda *xs: tuple(module(*xs))
    if fmt == "torch_export":
        module = torch.export.load(str(path)).module()
        return lambda *xs: tuple(module(*xs))
    import onnx

    names = [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]
    try:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        run = session.run
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        run = ReferenceEvaluator(str(path)).run
    return lambda *xs: tuple(torch.from_numpy(y) for y in run(None, {n: x.numpy() for n, x in zip(names, xs)}))


def _verify(path: Path, fmt: str, flat: FlatModel, check: tuple, stem: str, names: list[str]) -> None:
    if fmt == "onnx":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return  # onnx.checker ran; numerics need onnxruntime (onnx.reference cannot run every model)
    with torch.no_grad():
        want = flat(*check)
    try:
        got = load(path, fmt)(*check)
    except Exception as exc:  # noqa: BLE001 - any failure to run the export is an export error
        raise ExportError(f"{fmt} export of '{stem}' does not run on a batch of {CHECK_BATCH}: {exc}") from exc
    if len(got) != len(want):
        raise ExportError(f"{fmt} export of '{stem}' returns {len(got)} outputs, not {len(want)}")
    for name, w, g in zip(names, want, got):
        try:
            torch.testing.assert_close(g, w, atol=1e-3, rtol=1e-3)
        except AssertionError as exc:
            raise ExportError(f"{fmt} export of '{stem}' differs from the eager model on output '{name}': "
                              f"{str(exc).strip().splitlines()[0]}") from None


@dataclass
class ExportResult:
    """What :func:`export` wrote: the manifest's path and contents, and every file by target and format."""

    manifest_path: Path
    manifest: dict
    files: list[Path]


def _heads_of_type(model, kind: str) -> list[str]:
    return [n for n in getattr(model, "predictions", []) if getattr(model.node_configs.get(n), "type", None) == kind]


def _refuse_outside_heads(model, formats: list[str]) -> None:
    """Gradient-boosted heads run LightGBM and run members run another model: only ONNX carries them
    (as files of their own, see the module docstring)."""
    other = [f for f in formats if f != "onnx"]
    for kind, what in (("gbdt", "its LightGBM trees are not torch operations"),
                       ("run", "it is the head of another trained run")):
        heads = _heads_of_type(model, kind)
        if heads and other:
            raise ExportError(f"heads.{heads[0]} ({kind}) is not exportable to {', '.join(other)}: {what}, so "
                              "torchscript and torch_export cannot carry it. Export to onnx (--export onnx): the "
                              + ("trees become an ONNX tree ensemble next to the neural graph"
                                 if kind == "gbdt" else "member run is exported next to the fused graph")
                              + ", served torch-free by archspec.serving")
    unfitted = [h for h in _heads_of_type(model, "gbdt") if not model.node_module(h).boosters]
    if unfitted:
        head = unfitted[0]
        raise ExportError(f"heads.{head} (gbdt) has no fitted trees: a spec's export holds none — train it and "
                          "export the run (archspec build RUN --export onnx)")


class _Given(nn.Module):
    """Stands in for a head computed outside the graph (a gbdt head's trees): its value is an input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _trees_outside(model):
    """``model`` with every gbdt head's output read from the input ``<head>.gbdt`` (its trees' raw
    scores, computed by the head's own ONNX file), and without the inputs only the trees read. The
    modules are shared, so the graph computes every other node, late fusions included, as ``model``."""
    from .nn.model import CompiledModel

    trees = set(_heads_of_type(model, "gbdt"))
    if not trees:
        return model
    plan = [(n, sec, [n + ".gbdt"] if n in trees else list(args)) for n, sec, args in model.plan]
    modules = {n: _Given() if n in trees else model.node_module(n) for n, _, _ in model.plan}
    needed = {a[:-5] if a.endswith(".mask") else a for _, _, args in plan for a in args}
    inputs = {k: s for k, s in model.inputs.items() if k in needed}
    inputs.update({n + ".gbdt": model.shapes[n] for n in model.predictions if n in trees})
    out = CompiledModel(plan, modules, model.sections, model.predictions, model.similarity, model.frozen, inputs,
                        model.node_configs, model.shapes)
    out.vocab, out.task_keys = model.vocab, model.task_keys
    if getattr(model, "checked", None) is not None:
        out.checked = model.checked
    return out.eval()


def _feature_layout(model, head: str, preprocessor) -> list[dict]:
    """How the ``features`` of a gbdt head's ONNX file are made from its inputs, column by column."""
    cfg, module = model.node_configs[head], model.node_module(head)
    layout, col = [], 0
    state = preprocessor.state_dict()["inputs"] if preprocessor is not None else {}
    for name, width, cat in zip(cfg.inputs, module.widths, module.categorical):
        kind = state.get(name, {}).get("type")
        if cat:
            how = "category index: vocabulary[i] -> i + 1, unseen or missing -> 0 (as a float)"
        elif kind == "numeric":
            how = "(x - shift) / scale computed in float64, then float32 (the input's transform)"
        else:
            how = "the values as float32"
        layout.append({"input": name, "columns": [col, col + width], "from_raw": how})
        col += width
    return layout


def _export_trees(model, name: str, out_dir: Path, preprocessor, verify: bool) -> tuple[dict, list[Path]]:
    """Each gbdt head's trees as ``<name>.<head>.gbdt.onnx``, checked against the torch head; returns the
    manifest's ``gbdt`` section and the files."""
    from . import gbdt as gb

    entries, files = {}, []
    tf = _in_graph(model, preprocessor)
    for head in _heads_of_type(model, "gbdt"):
        cfg, module = model.node_configs[head], model.node_module(head)
        path = out_dir / f"{name}.{head}.gbdt.onnx"
        try:
            proto = gb.to_onnx(module, head)
        except BuildError:
            raise
        except Exception as exc:  # noqa: BLE001 - the converter raises anything; say which head and why
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"onnx export of the trees of heads.{head} (gbdt) failed: {first}") from exc
        import onnx

        tmp = path.with_suffix(".onnx.tmp")
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)
        if verify:
            _verify_trees(model, head, path)
        shape = model.shapes[head]
        inputs = (_input_specs(model, list(cfg.inputs), preprocessor, tf) if preprocessor is not None
                  else [{"name": i} for i in cfg.inputs])
        for spec in inputs:  # the trees' file has no transforms inside: the runtime makes its features
            t = spec.get("transform") or {}
            if "in_graph" in t:
                t["runtime"] = t.pop("in_graph") + " (see features.layout)"
        entries[head] = {
            "file": os.path.relpath(path, out_dir), "task": cfg.task, "trees": module.trees(),
            "boosters": len(module.boosters), "converter": "onnxmltools (LightGBM), ai.onnx.ml tree ensembles",
            "inputs": inputs,
            "features": {"name": gb.ONNX_FEATURES, "dtype": "float32", "shape": [BATCH, sum(module.widths)],
                         "layout": _feature_layout(model, head, preprocessor)},
            "output": {"name": gb.ONNX_SCORES, "dtype": "float32", "shape": [BATCH, *shape.dims],
                       "meaning": "the trees' raw scores (logits for classification, values for regression)",
                       "feeds": head + ".gbdt"},
        }
        files.append(path)
    return entries, files


def _verify_trees(model, head: str, path: Path) -> None:
    try:
        import onnxruntime as ort
    except ImportError:
        return
    from .gbdt import ONNX_FEATURES, onnx_features

    module, cfg = model.node_module(head), model.node_configs[head]
    batch = model.example_batch(64, seed=1)
    xs = [batch[i] for i in cfg.inputs]
    with torch.no_grad():
        want = module(*xs).numpy()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    got = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(
        None, {ONNX_FEATURES: onnx_features(module, xs)})[0]
    try:
        torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(want), atol=1e-4, rtol=1e-4)
    except AssertionError as exc:
        raise ExportError(f"onnx export of the trees of heads.{head} (gbdt) differs from LightGBM: "
                          f"{str(exc).strip().splitlines()[0]}") from None


MEMBERS_DIR = "members"


def _export_members(model, out_dir: Path, verify: bool) -> tuple[dict, list[Path]]:
    """Each ``type: run`` member's run exported (ONNX, with its preprocessing) into ``members/<head>/``."""
    from .inference import load_run

    checked = getattr(model, "checked", None)
    entries, files = {}, []
    for head in _heads_of_type(model, "run"):
        cfg = model.node_configs[head]
        run = cfg.run_dir(checked.base_dir if checked is not None else Path.cwd())
        member, mpre, _ = load_run(run)
        sub = out_dir / MEMBERS_DIR / head
        from .retrieval import run_fingerprint

        result = export(member, sub, ["onnx"], verify=verify, preprocessor=mpre, run=run_fingerprint(run))
        entries[head] = {"run": str(run), "head": cfg.head, "dir": os.path.relpath(sub, out_dir),
                         "manifest": os.path.relpath(result.manifest_path, out_dir),
                         "output": cfg.head, "feeds": head + ".member"}
        files += result.files + [result.manifest_path]
    return entries, files


def export(model, out_dir, formats, *, name: str | None = None, verify: bool = True,
           preprocessor=None, run: dict | None = None) -> ExportResult:
    """Export ``model`` (and each similarity head's towers) in every format, plus a manifest.

    With the ``preprocessor`` of a trained run the export is self-contained: the fitted
    preprocessing is written to ``preprocess/`` (JSON statistics and vocabularies, tokenizer files;
    no pickle), numeric standardisation and integer category lookup happen inside the exported
    graphs (raw values go in), and each manifest input says what it ``expects`` and how it is made
    from a raw row. :mod:`archspec.serving` runs such an export from raw rows without torch.

    Args:
        model: a :class:`~archspec.nn.model.CompiledModel`.
        out_dir: directory to write to (created if missing).
        formats: any of ``torchscript``, ``onnx``, ``torch_export``.
        name: file name stem (defaults to the spec's name).
        verify: load each file back and compare it with the eager model on another batch size.
        run: the trained run's fingerprint (spec hash and weights,
            :func:`archspec.retrieval.run_fingerprint`), recorded so that an index built from the
            same run can be matched with the export.

    Returns:
        an :class:`ExportResult`.

    Raises:
        ExportError: an exporter failed, or an export does not reproduce the eager model.

    Example:
        >>> import tempfile
        >>> from archspec.build import compile_spec
        >>> m = compile_spec("archspec: 1\\nname: tiny\\ninputs: {x: {type: numeric, columns: [a, b]}}\\n"
        ...                  "heads: {y: {type: regression, from: x}}\\n")
        >>> with tempfile.TemporaryDirectory() as out:
        ...     r = export(m, out, ["torch_export"])
        >>> r.manifest["inputs"][0]["shape"], r.manifest["files"]
        (['batch', 2], {'torch_export': 'tiny.pt2'})
    """
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ExportError(f"unknown export format '{unknown[0]}' — known: {', '.join(FORMATS)}")
    checked = getattr(model, "checked", None)
    _refuse_outside_heads(model, formats)
    source, model = model, _trees_outside(model)
    name = name or (checked.spec.name if checked is not None else "model")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    was_training = source.training
    source.eval()
    model.eval()
    written: list[Path] = []
    try:
        targets = _targets(model, name, preprocessor)
        for t in targets:
            args = example_args(model, t.module.keys, module=t.module)
            check = example_args(model, t.module.keys, CHECK_BATCH, seed=1, module=t.module)
            with torch.no_grad():
                t.module(*args)  # warm the model's plan cache outside the tracers
            for fmt in formats:
                path = out_dir / (t.stem + SUFFIX[fmt])
                try:
                    with _quiet():
                        if fmt == "torchscript":
                            _export_torchscript(t.module, args, check, path)
                        elif fmt == "torch_export":
                            _export_torch_export(t.module, args, check, path)
                        else:
                            _export_onnx(t.module, args, check, path, [o["name"] for o in t.outputs])
                except ExportError:
                    raise
                except Exception as exc:  # noqa: BLE001 - exporters raise anything; say which and why
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise ExportError(f"{fmt} export of '{t.stem}' failed: {first}") from exc
                if verify:
                    _verify(path, fmt, t.module, check, t.stem, [o["name"] for o in t.outputs])
                t.files[fmt] = path
                written.append(path)
                if fmt == "onnx" and Path(str(path) + ".data").exists():
                    written.append(Path(str(path) + ".data"))
        manifest = _manifest(model, name, targets, formats, out_dir)
        if _heads_of_type(source, "gbdt"):
            manifest["gbdt"], more = _export_trees(source, name, out_dir, preprocessor, verify)
            written += more
        if _heads_of_type(source, "run"):
            manifest["members"], more = _export_members(source, out_dir, verify)
            written += more
        if run is not None:
            manifest["run"] = run
        manifest["preprocessing"] = None
        if preprocessor is not None:
            preprocessor.save(out_dir / PREPROCESS_DIR)
            written.append(out_dir / PREPROCESS_DIR / "preprocessor.json")
            manifest["preprocessing"] = {
                "dir": PREPROCESS_DIR, "state": f"{PREPROCESS_DIR}/preprocessor.json",
                "in_graph": "numeric standardisation; lookup of integer categories",
                "runtime": "tokenization, image decoding, lookup of text categories (archspec.serving)"}
        manifest_path = out_dir / f"{name}.export.json"
        tmp = manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, manifest_path)
    finally:
        source.train(was_training)
    return ExportResult(manifest_path, manifest, written)
