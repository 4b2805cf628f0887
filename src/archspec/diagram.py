"""Diagrams of a spec's graph (Mermaid or Graphviz dot), drawn from the checked spec alone.

Torch-free, like every stage before the build: ``archspec build --graph mermaid`` draws a spec
without building it, and Mermaid needs no system graphviz (GitHub and most Markdown viewers render
it). Each node shows its name, its type and its output shape; the node's outline tells its
section (inputs, encoders, fusions, heads). Edges into a late fusion carry predictions, not
features, and are drawn dashed; the two edges into a similarity head are labelled ``query`` and
``candidate`` (``query`` and ``context`` into a cross-attention fusion), and an edge out of an
``mmoe`` node carries the name of the task output it reads.
"""

from __future__ import annotations

from .registry import SECTION_KINDS

SECTIONS = tuple(SECTION_KINDS)
FORMATS = {"mermaid": ".mmd", "dot": ".dot"}

# Mermaid node outlines: (open, close) around the quoted label.
_MERMAID_SHAPE = {
    "inputs": ('[/"', '"/]'),  # parallelogram: data coming in
    "encoders": ('["', '"]'),  # rectangle
    "fusions": ('{{"', '"}}'),  # hexagon
    "heads": ('(["', '"])'),  # stadium: a prediction
}
_DOT_SHAPE = {
    "inputs": 'shape=parallelogram',
    "encoders": 'shape=box',
    "fusions": 'shape=hexagon',
    "heads": 'shape=box, style="rounded,bold"',
}


def _edges(checked):
    """``(source, target, label, dashed)`` for every edge, targets in topological order."""
    g = checked.graph
    out = []
    for name in g.order:
        cfg = g.nodes[name]
        late = g.is_late(name)
        similarity = getattr(cfg, "type", None) == "similarity"
        ports = g.ports.get(name) or [None] * len(g.edges.get(name, []))
        for src, port in zip(g.edges.get(name, []), ports):
            label = port or ""  # the task output of an mmoe this edge carries
            if similarity:
                label = "query" if src == cfg.query.split(".")[0] else "candidate"
            elif getattr(cfg, "type", None) == "cross_attention":
                label = "query" if src == cfg.query else "context"
            out.append((src, name, label, late))
    return out


def _label_parts(checked, name: str, shapes: dict | None) -> tuple[str, str, str]:
    g = checked.graph
    shape = (shapes or {}).get(name) or checked.shapes.get(name)
    return name, str(getattr(g.nodes[name], "type", "?")), str(shape) if shape is not None else "?"


def _by_section(checked) -> dict:
    g = checked.graph
    return {s: [n for n in g.order if g.section[n] == s] for s in SECTIONS}


def mermaid(checked, shapes: dict | None = None) -> str:
    """A Mermaid ``flowchart`` of a checked spec.

    Args:
        checked: a valid :class:`~archspec.pipeline.Checked`.
        shapes: node → shape to show instead of the checker's (e.g. the shapes a build proved).

    Example:
        >>> from archspec.pipeline import check_text
        >>> c = check_text("archspec: 1\\nname: m\\ninputs: {x: {type: numeric, columns: [a, b]}}\\n"
        ...                "heads: {y: {type: regression, from: x}}\\n")
        >>> print(mermaid(c).splitlines()[-1])
            n_x --> n_y
    """

    def esc(text: str) -> str:
        return text.replace('"', "#quot;")

    lines = ["---", f"title: {getattr(checked.spec, 'name', 'archspec')}", "---", "flowchart LR"]
    for section, names in _by_section(checked).items():
        if not names:
            continue
        lines.append(f'    subgraph s_{section}["{section}"]')
        lines.append("        direction TB")
        opn, cls = _MERMAID_SHAPE[section]
        for name in names:
            label = "<br/>".join(esc(p) for p in _label_parts(checked, name, shapes))
            lines.append(f"        n_{name}{opn}{label}{cls}")
        lines.append("    end")
    for src, dst, label, dashed in _edges(checked):
        arrow = "-.->" if dashed else "-->"
        lines.append(f"    n_{src} {arrow}{f'|{label}|' if label else ''} n_{dst}")
    return "\n".join(lines) + "\n"


def dot(checked, shapes: dict | None = None) -> str:
    """A Graphviz ``digraph`` of a checked spec (render with ``dot -Tsvg``).

    Example:
        >>> from archspec.pipeline import check_text
        >>> c = check_text("archspec: 1\\nname: m\\ninputs: {x: {type: numeric, columns: [a, b]}}\\n"
        ...                "heads: {y: {type: regression, from: x}}\\n")
        >>> '"x" -> "y";' in dot(c)
        True
    """

    def q(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    name = getattr(checked.spec, "name", "archspec")
    lines = [f"digraph {q(name)} {{",
             "    rankdir=LR;",
             '    node [fontname="Helvetica", fontsize=10];',
             '    edge [fontname="Helvetica", fontsize=9];']
    for section, names in _by_section(checked).items():
        if not names:
            continue
        lines.append(f"    subgraph cluster_{section} {{")
        lines.append(f'        label={q(section)}; style=rounded; color=gray60; fontcolor=gray30;')
        for n in names:
            label = "\\n".join(p.replace("\\", "\\\\").replace('"', '\\"') for p in _label_parts(checked, n, shapes))
            lines.append(f'        {q(n)} [{_DOT_SHAPE[section]}, label="{label}"];')
        lines.append("    }")
    for src, dst, label, dashed in _edges(checked):
        attrs = []
        if dashed:
            attrs.append("style=dashed")
        if label:
            attrs.append(f"label={q(label)}")
        lines.append(f"    {q(src)} -> {q(dst)}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(checked, fmt: str, shapes: dict | None = None) -> str:
    """The diagram of ``checked`` in ``fmt`` (``mermaid`` or ``dot``).

    Raises:
        ValueError: an unknown format.
    """
    if fmt == "mermaid":
        return mermaid(checked, shapes)
    if fmt == "dot":
        return dot(checked, shapes)
    raise ValueError(f"unknown diagram format '{fmt}' — known: {', '.join(FORMATS)}")
