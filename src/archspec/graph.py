"""Stage 4: the spec as a graph — names resolved, edges checked, topological order, no cycles."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import did_you_mean
from .registry import SECTION_KINDS as SECTIONS

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# which sections a node of each section may reference
_MAY_READ = {
    "inputs": set(),
    "encoders": {"inputs", "encoders", "fusions"},
    "fusions": {"inputs", "encoders", "fusions", "heads"},
    "heads": {"inputs", "encoders", "fusions"},
}


@dataclass
class Graph:
    """A checked graph view of a spec.

    Attributes:
        nodes: name → config, in the order written.
        section: name → section (`inputs`, `encoders`, `fusions`, `heads`).
        edges: name → names it reads, in order.
        order: topological order (every node after the nodes it reads); cyclic nodes left out.
        ports: name → for each edge, the task output read (``moe.genre`` reads output ``genre``
            of node ``moe``), or ``None`` for the node's one output.
    """

    nodes: dict = field(default_factory=dict)
    section: dict = field(default_factory=dict)
    edges: dict = field(default_factory=dict)
    order: list = field(default_factory=list)
    incomplete: bool = False
    ports: dict = field(default_factory=dict)

    def sources(self, name: str) -> list[str]:
        """The value keys ``name`` reads, in order: a node name, or ``node.output`` for one task output."""
        ports = self.ports.get(name) or [None] * len(self.edges.get(name, []))
        return [s if p is None else f"{s}.{p}" for s, p in zip(self.edges.get(name, []), ports)]

    def path(self, name: str) -> tuple:
        return (self.section[name], name)

    def consumers(self) -> dict:
        out = {n: [] for n in self.nodes}
        for n, srcs in self.edges.items():
            for s in srcs:
                if s in out:
                    out[s].append(n)
        return out

    def is_late(self, name: str) -> bool:
        return getattr(self.nodes.get(name), "type", None) == "late"

    def predictions(self) -> list[str]:
        """Nodes that make a prediction with labels: heads and late fusions."""
        return [n for n in self.order if self.section[n] == "heads" or self.is_late(n)]


def build_graph(spec, report, broken=frozenset(), partial=False) -> Graph:
    """Resolve names and order the nodes.

    Args:
        spec: a validated ``Spec``.
        report: ``report(code, path, message, hint, severity=ERROR, key=False)``.
        broken: names of nodes that failed schema validation (references to them are not reported).
        partial: a whole section is missing or unreadable, so names cannot be resolved (unknown
            references and a missing head are then left to the schema errors).

    Returns:
        the :class:`Graph` (partial when references are broken; problems go to ``report``).
    """
    g = Graph()
    for section in SECTIONS:
        for name, cfg in getattr(spec, section).items():
            if not NAME_RE.match(name):
                report("E-NAME", (section, name), f"node name '{name}' is not an identifier",
                       "use letters, digits and underscores, not starting with a digit "
                       "(names become module names in the state dict)", key=True)
            if name in g.nodes:
                report("E-NAME-DUP", (section, name), f"'{name}' is already a node in `{g.section[name]}`",
                       "node names are unique across the whole spec; rename one", key=True)
                continue
            g.nodes[name] = cfg
            g.section[name] = section
    if not spec.heads and not broken and not partial:
        report("E-NO-HEADS", ("heads",), "the spec has no heads, so nothing is predicted or trained",
               "add a head (e.g. `type: multiclass`)")

    for name, cfg in g.nodes.items():
        sec = g.section[name]
        srcs, ports = [], []
        for rel, full in cfg.references():
            path = (sec, name) + rel
            ref, dot, port = full.partition(".")  # `moe.genre`: output `genre` of node `moe`
            if ref in broken:
                continue
            if ref not in g.nodes:
                if partial:
                    continue
                readable = sorted(n for n in g.nodes if n != name and g.section[n] in _MAY_READ[sec])
                hint = (did_you_mean(ref, readable) or did_you_mean(ref, g.nodes)
                        or (f"nodes `{sec}.{name}` can read: {', '.join(readable)}" if readable
                            else f"define a node named '{ref}'"))
                report("E-REF", path, f"unknown node '{ref}'", hint)
                continue
            if ref == name:
                report("E-CYCLE", path, f"'{name}' reads itself", "read another node")
                continue
            rsec = g.section[ref]
            late = cfg.type == "late"
            ok = rsec in _MAY_READ[sec]
            if sec == "fusions":
                ok = (rsec == "heads" or g.is_late(ref)) if late else (rsec != "heads" and not g.is_late(ref))
            elif rsec == "fusions" and g.is_late(ref):
                ok = False
            if not ok:
                what = {"inputs": "an input", "encoders": "an encoder", "heads": "a head"}.get(rsec, "a fusion")
                if g.is_late(ref):
                    what = "a late fusion (a prediction)"
                if late:
                    hint = ("a late fusion combines predictions: list heads (or late fusions); "
                            "to fuse features use `type: early`")
                elif rsec == "heads" or g.is_late(ref):
                    hint = ("predictions are combined by a `late` fusion; features are read from "
                            "inputs, encoders and early fusions")
                else:
                    hint = "read an input, encoder or early fusion"
                report("E-REF-KIND", path, f"`{sec}.{name}` cannot read '{ref}', which is {what}", hint)
                continue
            outputs = getattr(g.nodes[ref], "task_outputs", None) or ()
            if dot and port not in outputs:
                if outputs:
                    near = did_you_mean(port, outputs)
                    report("E-REF-OUTPUT", path, f"'{ref}' has no output '{port}'",
                           (near + " " if near else "") + "its outputs: " + ", ".join(f"{ref}.{t}" for t in outputs))
                else:
                    report("E-REF-OUTPUT", path, f"'{ref}' has a single output, not '{port}'",
                           f"write `{ref}` (a dotted reference `node.output` reads one task output of an mmoe)")
                continue
            if not dot and outputs:
                report("E-REF-OUTPUT", path, f"'{ref}' gives one output per task ({', '.join(outputs)}): "
                       "say which one this node reads", f"write e.g. `{ref}.{outputs[0]}`")
                continue
            srcs.append(ref)
            ports.append(port if dot else None)
        g.edges[name] = srcs
        g.ports[name] = ports
        g.incomplete = g.incomplete or len(srcs) != len(cfg.references())

    # Kahn's algorithm; whatever is left sits on a cycle.
    indeg = {n: len(v) for n, v in g.edges.items()}
    cons = g.consumers()
    ready = [n for n in g.nodes if indeg[n] == 0]
    while ready:
        n = ready.pop(0)
        g.order.append(n)
        for c in cons[n]:
            indeg[c] -= 1
            if indeg[c] == 0:
                ready.append(c)
    cyclic = [n for n in g.nodes if n not in g.order]
    if cyclic:
        cycle = _find_cycle(g, cyclic)
        first = cycle[0]
        # point at the reference that closes the loop: `first` reading the last node of the cycle
        rel = next((r for r, ref in g.nodes[first].references() if ref == cycle[-1]), ())
        report("E-CYCLE", g.path(first) + rel, "cycle: " + " → ".join(cycle + [first])
               + " (each node feeds the next)", "a spec is a directed acyclic graph; break the cycle")
    return g


def _find_cycle(g: Graph, nodes: list) -> list:
    start = nodes[0]
    seen, path = {}, []
    n = start
    while n not in seen:
        seen[n] = len(path)
        path.append(n)
        nxt = [s for s in g.edges.get(n, []) if s in nodes]
        if not nxt:
            break
        n = nxt[0]
    cycle = path[seen.get(n, 0):]
    return list(reversed(cycle))


def unused_nodes(g: Graph) -> list[str]:
    """Inputs, encoders and fusions that no prediction depends on."""
    needed = set()
    stack = [n for n in g.nodes if g.section[n] == "heads" or g.is_late(n)]
    while stack:
        n = stack.pop()
        if n in needed:
            continue
        needed.add(n)
        stack.extend(g.edges.get(n, []))
    return [n for n in g.nodes if n not in needed]


def loss_predictions(g: Graph) -> list[str]:
    """Heads and late fusions that carry a loss (the terms of the total loss), in graph order."""
    return [n for n in g.predictions() if getattr(g.nodes[n], "loss", None) is not None]


def ancestors(g: Graph, name: str) -> set:
    """``name`` and every node it reads, directly or not."""
    seen, stack = set(), [name]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(g.edges.get(n, []))
    return seen


def shared_nodes(g: Graph) -> list[str]:
    """Nodes every loss reads through the same output, that can hold trainable layers, in
    topological order (the last one holds the "last shared layer" GradNorm watches).

    Inputs (no parameters), frozen encoders and nodes with one output per task (an ``mmoe``: each
    task reads its own gated mixture) are not shared layers.
    """
    preds = [p for p in loss_predictions(g) if getattr(g.nodes[p].loss, "weight", 1) > 0]
    if not preds:
        return []
    common = set.intersection(*(ancestors(g, p) for p in preds))
    out = []
    for n in g.order:
        cfg = g.nodes[n]
        if n not in common or g.section[n] == "inputs" or getattr(cfg, "trainable", True) is False:
            continue
        if getattr(cfg, "task_outputs", None):
            continue
        out.append(n)
    return out


def label_space(g: Graph, name: str):
    """``((kind, size, names), target)`` of a prediction node, or ``(None, None)``."""
    # Follow first members down through nested late fusions; a loop (reported as E-CYCLE) ends it.
    target, seen = None, set()
    while name not in seen:
        seen.add(name)
        cfg = g.nodes.get(name)
        if cfg is None:
            return None, None
        if g.is_late(name):
            target = target or cfg.target
            if not cfg.inputs:
                return None, None
            name = cfg.inputs[0]
            continue
        if g.section[name] == "heads":
            return cfg.label_space(), target or getattr(cfg, "target_column", None) or cfg.target or name
        return None, None
    return None, None


def prediction_kind(g: Graph, name: str) -> str | None:
    """Kind of a prediction (``multiclass``, ``regression``, ...); a late fusion takes its members'."""
    space, _ = label_space(g, name)
    if g.section.get(name) == "heads":
        return g.nodes[name].kind
    return space[0] if space else None


def prediction_metrics(g: Graph, name: str) -> list[str]:
    """Metrics reported for a head or late fusion (a late fusion defaults to its first member's)."""
    cfg = g.nodes[name]
    names = cfg.resolved_metrics()
    if not names and g.is_late(name) and cfg.inputs and cfg.inputs[0] in g.nodes and cfg.inputs[0] != name:
        return prediction_metrics(g, cfg.inputs[0])
    return names


def prediction_threshold(g: Graph, name: str) -> float | None:
    """Probability above which a multilabel/binary prediction predicts a label: the head's
    `threshold`; for a late fusion its own `threshold`, else its first member's. ``None`` for
    other kinds. The one answer used by metrics, ``predict`` and hard votes alike."""
    seen = set()
    while name in g.nodes and name not in seen:
        seen.add(name)
        cfg = g.nodes[name]
        if g.is_late(name):
            if cfg.threshold is not None:
                return cfg.threshold
            if not cfg.inputs:
                return None
            name = cfg.inputs[0]
            continue
        return getattr(cfg, "decision_threshold", None)
    return None


def prediction_target(g: Graph, name: str) -> str | None:
    """Data column holding a prediction's labels (a late fusion's defaults to its members')."""
    space, target = label_space(g, name)
    if target is not None:
        return target
    cfg = g.nodes.get(name)
    return (getattr(cfg, "target", None) or name) if cfg is not None and g.section.get(name) == "heads" else None


def output_activation(g: Graph, name: str) -> str | None:
    """``softmax``/``sigmoid`` that turns a prediction's logits into probabilities (``None`` for values)."""
    seen = set()
    while name in g.nodes and name not in seen:
        seen.add(name)
        cfg = g.nodes[name]
        if not g.is_late(name):
            return getattr(cfg, "output_activation", None)
        if not cfg.inputs:
            return None
        name = cfg.inputs[0]
    return None
