"""The one module that knows the order of the stages: load → spec → graph → checks/shapes → (build).

Everything here is torch-free; :func:`archspec.compile` adds the build stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from .checks import Context, run_checks
from .errors import ERROR, WARNING, Diagnostic, SpecError, sort_key
from .graph import Graph, build_graph
from .load import SourceMap, load_file, load_text
from .pydantic_errors import to_diagnostics
from .spec import SECTIONS, node_adapter, spec_model


@dataclass
class Checked:
    """The outcome of checking one spec.

    Attributes:
        file: the spec's file name.
        spec: the validated ``Spec`` model, or ``None`` if it did not pass the schema.
        graph: resolved graph (``None`` with ``spec``).
        shapes: node name → inferred :class:`~archspec.shapes.Shape`.
        diagnostics: every problem found, sorted by position.
    """

    file: str
    spec: object = None
    graph: Graph | None = None
    shapes: dict = field(default_factory=dict)
    diagnostics: list = field(default_factory=list)
    base_dir: Path | None = None
    data: object = None
    smap: SourceMap | None = None
    """Where every YAML path is in the file (``None`` when the file did not load)."""

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == WARNING]

    def ok(self, strict: bool = False) -> bool:
        return not self.errors and not (strict and self.warnings)

    def raise_for_errors(self, strict: bool = False) -> "Checked":
        """Raise :class:`SpecError` with every diagnostic when the spec is not valid."""
        if not self.ok(strict):
            raise SpecError(self.diagnostics)
        return self


def _check(data, smap: SourceMap, base_dir: Path | None) -> Checked:
    out = Checked(file=smap.file, base_dir=base_dir, data=data, smap=smap)
    if not isinstance(data, dict):
        line, col = smap.locate(())
        out.diagnostics.append(Diagnostic("E-YAML-DOC", ERROR, (), "a spec is a mapping of sections at the top "
                                          "level", "start from a spec in specs/", smap.file, line, col))
        return out
    model = spec_model()
    diags: list[Diagnostic] = []
    # Validate node by node so one bad node does not hide the problems of the others.
    clean, broken = dict(data), set()
    for section in SECTIONS:
        nodes = data.get(section)
        if not isinstance(nodes, dict):
            continue
        good = {}
        for name, raw in nodes.items():
            try:
                good[name] = node_adapter(section).validate_python(raw)
            except ValidationError as exc:
                diags += to_diagnostics(exc, data, smap, model, prefix=(section, name))
                broken.add(name)
        clean[section] = good
    try:
        spec = model.model_validate(clean)
    except ValidationError as exc:
        diags += to_diagnostics(exc, data, smap, model)
        spec = _partial(model, clean)
    schema_ok = not diags  # `diags` is also the checks' list: warnings must not void the spec
    ctx = Context(spec=spec, graph=Graph(), smap=smap, base_dir=base_dir, diagnostics=diags)
    if spec is not None:
        # a section that is missing or not a mapping hides its node names: do not guess at references
        partial = any(not isinstance(data.get(s, {}), dict) for s in SECTIONS) or \
            any(s not in data for s in ("inputs", "heads"))
        ctx.graph = build_graph(spec, ctx.report, broken=broken, partial=partial)
        run_checks(ctx, complete=not diags)
    out.graph, out.shapes = ctx.graph, ctx.shapes
    out.spec = spec if schema_ok else None
    out.diagnostics = sorted(_dedupe(ctx.diagnostics), key=sort_key)
    return out


def _partial(model, clean: dict):
    """A stand-in spec of the parts that validated, so graph checks still run; ``None`` if too broken."""
    from types import SimpleNamespace

    from .spec.training import TrainingConfig

    sections = {s: clean.get(s) if isinstance(clean.get(s), dict) else {} for s in SECTIONS}
    if not all(all(not isinstance(v, dict) for v in nodes.values()) for nodes in sections.values()):
        return None
    try:
        training = TrainingConfig.model_validate(clean.get("training", {}))
    except ValidationError:
        training = None
    return SimpleNamespace(training=training, **sections)


def _dedupe(diags):
    seen, out = set(), []
    for d in diags:
        key = (d.code, d.path, d.message)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def check_text(text: str, file: str = "<spec>", base_dir=None) -> Checked:
    """Check YAML text. Spec mistakes become diagnostics; nothing is raised for them.

    Example:
        >>> r = check_text("archspec: 1\\nname: m\\ninputs: {x: {type: numeric, columns: [a]}}\\n"
        ...                "heads: {y: {type: regression, from: x}}\\n")
        >>> r.ok(), str(r.shapes["y"])
        (True, '(B, 1) values')
    """
    try:
        data, smap = load_text(text, file)
    except SpecError as exc:
        return Checked(file=file, diagnostics=sorted(exc.diagnostics, key=sort_key))
    return _check(data, smap, Path(base_dir) if base_dir else None)


def check_file(path) -> Checked:
    """Check a spec file; relative paths inside it resolve against its directory."""
    try:
        data, smap = load_file(path)
    except SpecError as exc:
        return Checked(file=str(path), diagnostics=sorted(exc.diagnostics, key=sort_key))
    return _check(data, smap, Path(path).resolve().parent)


def load_spec(source) -> Checked:
    """A checked spec from a path, YAML text, or an already checked spec; raises on errors.

    Raises:
        SpecError: the spec has errors (warnings are allowed).
    """
    if isinstance(source, Checked):
        return source.raise_for_errors()
    if isinstance(source, (str, Path)) and not (isinstance(source, str) and "\n" in source):
        return check_file(source).raise_for_errors()
    return check_text(str(source)).raise_for_errors()
