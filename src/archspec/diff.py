"""``archspec diff OLD NEW``: what a change to a spec *does*, by node name, never by text lines.

Both sides go through the checker (torch-free), so the diff compares meaning: every default is
filled in, so writing a default out, reordering keys, reformatting or editing comments is no change.
It reports

* nodes added, removed and renamed (a rename: the same config under a new name, with its inputs
  followed through other renames),
* every changed field, old → new, with its line in NEW,
* edges rewired (what a node reads),
* inferred shapes that changed, including those that changed only because something upstream did,
* parameter counts per node and in total (static, see :mod:`archspec.params`),
* losses, metrics, thresholds and training settings changed,
* whether a trained run's checkpoint still loads (any shape or parameter change breaks it).

``OLD``/``NEW`` are files, or ``REF:path`` read with ``git show`` (``main:specs/x.yaml``).
"""

from __future__ import annotations

import copy
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ArchspecError, format_path
from .params import count_params
from .pipeline import Checked, check_file, check_text

SECTIONS = ("inputs", "encoders", "fusions", "heads")
#: fields whose change alters a module's parameters or buffers even at an equal count
STRUCTURAL = {"norm", "branch_norm", "model", "config", "pretrained", "kernel_size",
              "tasks"}  # an mmoe's gates are per task, in this order
_LOSS_KEYS = {"loss", "metrics", "threshold"}


class DiffError(ArchspecError):
    """A side cannot be read (git failed, no such ref or file): a usage problem, exit code 2."""

    exit_code = 2


# ------------------------------------------------------------------------------------------ reading


def read_side(arg: str) -> Checked:
    """Check one side: a spec file, or ``REF:path`` read from git.

    Raises:
        DiffError: git is missing, or the ref or path does not exist in it.
    """
    p = Path(arg)
    if p.exists() or ":" not in arg:
        return check_file(p)
    ref, _, path = arg.partition(":")
    text = _git_show(ref, path)
    return check_text(text, arg, base_dir=Path(path).resolve().parent)


def _git_show(ref: str, path: str) -> str:
    tries = [f"{ref}:{path}"] + ([] if path.startswith("./") else [f"{ref}:./{path}"])
    last = ""
    for obj in tries:
        try:
            proc = subprocess.run(["git", "show", obj], capture_output=True, timeout=60)
        except FileNotFoundError:
            raise DiffError(f"cannot read '{ref}:{path}': git is not installed (REF:path reads a spec "
                            "from git)") from None
        except subprocess.TimeoutExpired:
            raise DiffError(f"cannot read '{ref}:{path}': git did not answer within 60 s") from None
        if proc.returncode == 0:
            try:
                return proc.stdout.decode("utf-8")
            except UnicodeDecodeError:
                raise DiffError(f"'{ref}:{path}' is not UTF-8 text") from None
        last = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        last = last[0].removeprefix("fatal: ")
    raise DiffError(f"cannot read '{ref}:{path}' from git: {last} — write REF:PATH with a branch, tag or "
                    "commit and the file's path in the repository (e.g. main:specs/x.yaml)")


# ------------------------------------------------------------------------------------------ model


@dataclass
class Diff:
    """The semantic difference of two checked specs (see the module docstring)."""

    old: str
    new: str
    added: list = field(default_factory=list)  # {name, section, type, line, params}
    removed: list = field(default_factory=list)  # {name, section, type, line (in OLD), params}
    renamed: list = field(default_factory=list)  # {old, new, section, type, line, note}
    fields: list = field(default_factory=list)  # {node, path, old, new, line, category}
    edges: list = field(default_factory=list)  # {node, path, old, new, line}
    shapes: list = field(default_factory=list)  # {node, old, new, cause, upstream}
    params: list = field(default_factory=list)  # {node, old, new, delta}
    total: dict = field(default_factory=dict)  # {old, new, delta}
    checkpoint: list = field(default_factory=list)  # reasons a trained checkpoint no longer loads

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.renamed or self.fields or self.edges)

    @property
    def checkpoint_compatible(self) -> bool:
        return not self.checkpoint

    def to_dict(self) -> dict:
        return {"old": self.old, "new": self.new, "changed": self.changed,
                "checkpoint_compatible": self.checkpoint_compatible, "checkpoint": list(self.checkpoint),
                "summary": summary(self),
                "nodes": {"added": self.added, "removed": self.removed, "renamed": self.renamed},
                "fields": self.fields, "edges": self.edges, "shapes": self.shapes,
                "params": {"nodes": self.params, "total": self.total}}


def _dump(cfg) -> dict:
    """A node's config with every default filled in; a head's metrics as reported (``null`` =
    the head type's defaults, so writing the defaults out is no change)."""
    out = cfg.model_dump(mode="json", by_alias=True)
    if getattr(cfg, "section", "") == "heads" and out.get("metrics") is None:
        out["metrics"] = list(cfg.resolved_metrics())
    return out


def _ref_keys(cfg) -> set:
    return {rel[0] for rel, _ in cfg.references()}


def _renamed(ref: str, mapping: dict) -> str:
    """A reference with its node renamed: ``moe.genres`` follows a rename of ``moe``."""
    node, dot, port = ref.partition(".")
    return mapping.get(node, node) + dot + port


def _mapped(dump: dict, cfg, mapping: dict) -> dict:
    """``dump`` with every reference renamed through ``mapping`` (OLD names → NEW names)."""
    out = copy.deepcopy(dump)
    for rel, ref in cfg.references():
        target = out
        for part in rel[:-1]:
            target = target[part]
        target[rel[-1]] = _renamed(ref, mapping)
    if isinstance(out.get("project"), dict):  # an early fusion's per-branch widths, keyed by branch name
        out["project"] = {mapping.get(k, k): v for k, v in out["project"].items()}
    return out


def _nodes(c: Checked) -> dict:
    out = {}
    for section in SECTIONS:
        for name, cfg in getattr(c.spec, section).items():
            out[name] = (section, cfg)
    return out


def _line(c: Checked, path, key: bool = False) -> int:
    return c.smap.locate(tuple(path), key=key)[0] if c.smap is not None else 0


def _walk(old, new, path=()):
    """``(path, old, new)`` for every differing leaf; lists of scalars compare as one value."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in list(old) + [k for k in new if k not in old]:
            if k not in new:
                yield path + (k,), old[k], None
            elif k not in old:
                yield path + (k,), None, new[k]
            else:
                yield from _walk(old[k], new[k], path + (k,))
    elif (isinstance(old, list) and isinstance(new, list) and len(old) == len(new)
          and any(isinstance(v, (dict, list)) for v in old + new)):
        for i, (a, b) in enumerate(zip(old, new)):
            yield from _walk(a, b, path + (i,))
    elif old != new:  # 1 and 1.0 are the same value; YAML 1.2 already made "1e-3" a float
        yield path, old, new


def _renames(old_nodes: dict, new_nodes: dict) -> dict:
    """OLD name → NEW name for nodes whose config is unchanged under a new name (inputs followed)."""
    gone = [n for n in old_nodes if n not in new_nodes]
    fresh = [n for n in new_nodes if n not in old_nodes]
    ren: dict = {}
    progress = True
    while progress:
        progress = False
        for x in gone:
            if x in ren:
                continue
            sec, cfg = old_nodes[x]
            want = _mapped(_dump(cfg), cfg, ren)
            for y in fresh:
                if y in ren.values() or new_nodes[y][0] != sec:
                    continue
                if _dump(new_nodes[y][1]) == want:
                    ren[x] = y
                    progress = True
                    break
    return ren


def _category(path: tuple) -> str:
    if path[0] == "training":
        return "training"
    if path[0] in SECTIONS:
        return "losses" if len(path) > 2 and path[2] in _LOSS_KEYS else "model"
    return "spec"


def diff_checked(old: Checked, new: Checked) -> Diff:
    """The semantic diff of two valid checked specs.

    Example:
        >>> spec = "archspec: 1\\nname: m\\ninputs: {{x: {{type: numeric, columns: {}}}}}\\n" \\
        ...        "heads: {{y: {{type: regression, from: x}}}}\\n"
        >>> d = diff_checked(check_text(spec.format("[a]")), check_text(spec.format("[a, b]")))
        >>> summary(d)
        '1 field changed, 1 shape changed, parameters 2 → 3 (+1), checkpoint-incompatible'
        >>> d.fields[0]["path"], d.fields[0]["old"], d.fields[0]["new"], d.fields[0]["line"]
        ('inputs.x.columns', ['a'], ['a', 'b'], 3)
    """
    d = Diff(old.file, new.file)
    on, nn_ = _nodes(old), _nodes(new)
    ren = _renames(on, nn_)
    back = {v: k for k, v in ren.items()}
    po, pn = count_params(old), count_params(new)

    for name, (sec, cfg) in nn_.items():
        if name in on or name in back:
            continue
        d.added.append({"name": name, "section": sec, "type": cfg.type,
                        "line": _line(new, (sec, name), key=True), "params": _count(pn, name)})
    for name, (sec, cfg) in on.items():
        if name in nn_ or name in ren:
            continue
        d.removed.append({"name": name, "section": sec, "type": cfg.type,
                          "line": _line(old, (sec, name), key=True), "params": _count(po, name)})
    for x, y in ren.items():
        sec, cfg = nn_[y]
        note = ""
        labelled = not (cfg.type == "similarity" and cfg.loss.type == "contrastive")  # in-batch negatives
        if sec == "heads" and getattr(cfg, "target", None) is None and labelled:
            note = f"label column changes from '{x}' to '{y}' (a head without `target` reads the column of its name)"
        d.renamed.append({"old": x, "new": y, "section": sec, "type": cfg.type,
                          "line": _line(new, (sec, y), key=True), "note": note})

    own_change = {a["name"] for a in d.added}
    structural = set()
    for name, (sec, cfg) in nn_.items():
        oname = back.get(name, name)
        if oname not in on:
            continue
        osec, ocfg = on[oname]
        odump = _mapped(_dump(ocfg), ocfg, ren)
        ndump = _dump(cfg)
        if osec != sec:  # the same name moved to another section: a different node
            own_change.add(name)
        refs = _ref_keys(cfg) | _ref_keys(ocfg)
        for path, a, b in _walk(odump, ndump):
            full = (sec, name) + path
            if path and path[0] in refs and ocfg.type == cfg.type:
                continue
            d.fields.append({"node": name, "path": format_path(full), "old": a, "new": b,
                             "line": _line(new, full), "category": _category(full)})
            own_change.add(name)
            if path and path[0] in STRUCTURAL:
                structural.add(name)
        oedges = [_renamed(s, ren) for s in _sources(old.graph, oname)]
        nedges = _sources(new.graph, name)
        if oedges != nedges:
            key = sorted(_ref_keys(cfg))
            path = (sec, name, key[0]) if len(key) == 1 else (sec, name)
            d.edges.append({"node": name, "path": format_path(path), "old": oedges, "new": nedges,
                            "line": _line(new, path)})
            own_change.add(name)

    # the spec's own fields and the training section
    odump = {k: v for k, v in old.spec.model_dump(mode="json", by_alias=True).items() if k not in SECTIONS}
    ndump = {k: v for k, v in new.spec.model_dump(mode="json", by_alias=True).items() if k not in SECTIONS}
    for path, a, b in _walk(odump, ndump):
        d.fields.append({"node": None, "path": format_path(path), "old": a, "new": b,
                         "line": _line(new, path), "category": _category(path)})

    # shapes, in NEW's topological order; "upstream" when the node itself did not change
    for name in new.graph.order:
        oname = back.get(name, name)
        if oname not in on or name not in new.shapes or oname not in old.shapes:
            continue
        a, b = str(old.shapes[oname]), str(new.shapes[name])
        if a == b:
            continue
        if name in own_change:
            d.shapes.append({"node": _qual(new, name), "old": a, "new": b, "cause": "own", "upstream": []})
        else:
            d.shapes.append({"node": _qual(new, name), "old": a, "new": b, "cause": "upstream",
                             "upstream": [_qual(new, u) for u in _causes(new, name, own_change)]})

    # parameters
    for name in new.graph.order:
        oname = back.get(name, name)
        if new.graph.section[name] == "inputs":
            continue
        a = po.nodes.get(oname) if oname in on else None
        b = pn.nodes.get(name)
        same = a is not None and b is not None and str(a) == str(b)
        if same and not (name in own_change and (name in structural or b.value is None)):
            continue
        d.params.append(_param_row(_qual(new, name), a, b))
    for name in old.graph.order:
        if name not in nn_ and name not in ren and old.graph.section[name] != "inputs":
            d.params.append(_param_row(_qual(old, name), po.nodes.get(name), None))
    d.total = _param_row("total", po.total, pn.total)
    d.total.pop("node")

    _checkpoint(d, old, new, po, pn, ren, back, own_change)
    return d


def _sources(g, name: str) -> list:
    """What a node reads, with the task output where it reads one (``moe.genres``)."""
    return list(g.sources(name))


def _qual(c: Checked, name: str) -> str:
    return f"{c.graph.section[name]}.{name}"


def _count(rep, name):
    c = rep.nodes.get(name)
    return None if c is None else str(c)


def _param_row(node, a, b) -> dict:
    """Old and new counts as text (``≤ 4,260``, ``deferred (...)``) and as numbers, and the change."""
    row = {"node": node, "old": None if a is None else str(a), "new": None if b is None else str(b), "delta": None,
           "old_value": None if a is None else a.value, "new_value": None if b is None else b.value,
           "bound": bool((a is not None and a.bound) or (b is not None and b.bound))}
    av = 0 if a is None else a.value
    bv = 0 if b is None else b.value
    if av is not None and bv is not None:
        row["delta"] = bv - av
    return row


def _causes(c: Checked, name: str, changed: set) -> list:
    """The nearest ancestors of ``name`` that changed themselves."""
    out, seen, stack = [], set(), list(c.graph.edges.get(name, []))
    while stack:
        n = stack.pop(0)
        if n in seen:
            continue
        seen.add(n)
        if n in changed:
            out.append(n)
        else:
            stack.extend(c.graph.edges.get(n, []))
    return [n for n in c.graph.order if n in out]


def _stateful(section: str, kind: str, params) -> bool:
    """Whether a node has entries in the state dict: parameters, or buffers (a late fusion's weights)."""
    return section != "inputs" and (params != "0" or kind == "late")


def _checkpoint(d: Diff, old, new, po, pn, ren, back, own_change) -> None:
    reasons = []
    for a in d.added:
        if _stateful(a["section"], a["type"], a["params"]):
            reasons.append(f"{a['section']}.{a['name']} is new ({a['params']} parameters)")
    for r in d.removed:
        if _stateful(r["section"], r["type"], r["params"]):
            reasons.append(f"{r['section']}.{r['name']} is removed ({r['params']} parameters)")
    for r in d.renamed:
        if _stateful(r["section"], r["type"], _count(pn, r["new"])):
            reasons.append(f"{r['section']}.{r['old']} is renamed {r['new']}: its state-dict keys change")
    listed = {f"{a['section']}.{a['name']}" for a in d.added + d.removed}
    for p in d.params:
        if p["node"] in listed:
            continue
        if p["old"] != p["new"]:
            reasons.append(f"{p['node']} parameters change ({p['old'] or 'none'} → {p['new'] or 'none'})")
        elif p["new"] and p["new"].startswith("deferred"):
            reasons.append(f"{p['node']} changes and its parameters are {p['new']}")
        else:
            reasons.append(f"{p['node']} changes its layers' structure ({p['new']} parameters)")
    for s in d.shapes:
        if s["node"].startswith("inputs."):
            continue  # an input has no weights: its consumers' parameter changes are listed
        if not any(r.startswith(s["node"] + " ") for r in reasons):
            reasons.append(f"{s['node']} output shape changes ({s['old']} → {s['new']})")
    d.checkpoint = reasons


# ------------------------------------------------------------------------------------------ rendering


def _v(value) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def summary(d: Diff) -> str:
    """One line: what changed, and whether checkpoints still load."""
    if not d.changed:
        return "no semantic change"
    parts = []
    for what, items in (("added", d.added), ("removed", d.removed), ("renamed", d.renamed)):
        if items:
            parts.append(f"{len(items)} node{'s' * (len(items) != 1)} {what}")
    nf = len(d.fields)
    if nf:
        parts.append(f"{nf} field{'s' * (nf != 1)} changed")
    if d.edges:
        parts.append(f"{len(d.edges)} edge{'s' * (len(d.edges) != 1)} rewired")
    if d.shapes:
        parts.append(f"{len(d.shapes)} shape{'s' * (len(d.shapes) != 1)} changed")
    t = d.total
    if t.get("old") != t.get("new"):
        delta = t.get("delta")
        parts.append(f"parameters {t['old']} → {t['new']}" + (f" ({delta:+,})" if delta is not None else ""))
    parts.append("checkpoint-incompatible" if d.checkpoint else "checkpoints still load")
    return ", ".join(parts)


_TITLES = {"model": "Model fields", "losses": "Losses, metrics and thresholds", "training": "Training",
           "spec": "Spec"}


def render_text(d: Diff) -> str:
    out = [f"archspec diff {d.old} → {d.new}: {summary(d)}"]
    if not d.changed:
        return out[0] + "\n"
    if d.added or d.removed or d.renamed:
        out.append("Nodes")
        out += [f"  + {a['section']}.{a['name']} ({a['type']}, line {a['line']}): {a['params'] or 'no'} parameters"
                for a in d.added]
        out += [f"  - {r['section']}.{r['name']} ({r['type']}): {r['params'] or 'no'} parameters" for r in d.removed]
        out += [f"  ~ {r['section']}.{r['old']} → {r['new']} (renamed, line {r['line']})"
                + (f": {r['note']}" if r["note"] else "") for r in d.renamed]
    for cat, title in _TITLES.items():
        rows = [f for f in d.fields if f["category"] == cat]
        if rows:
            out.append(title)
            out += [f"  {f['path']}: {_v(f['old'])} → {_v(f['new'])} (line {f['line']})" for f in rows]
    if d.edges:
        out.append("Edges rewired")
        out += [f"  {e['path']}: {', '.join(e['old']) or '-'} → {', '.join(e['new']) or '-'} (line {e['line']})"
                for e in d.edges]
    if d.shapes:
        out.append("Shapes")
        out += [f"  {s['node']}: {s['old']} → {s['new']}"
                + (f" (because {', '.join(s['upstream'])} changed)" if s["cause"] == "upstream" else "")
                for s in d.shapes]
    if d.params or d.total.get("old") != d.total.get("new"):
        out.append("Parameters")
        out += [f"  {p['node']}: {p['old'] or '-'} → {p['new'] or '-'}" + _delta(p) for p in d.params]
        out.append(f"  total: {d.total['old']} → {d.total['new']}" + _delta(d.total))
    out.append("Checkpoint: " + ("incompatible — a run trained on OLD cannot load its weights into NEW: "
                                 + "; ".join(d.checkpoint) if d.checkpoint else "compatible (no shape or "
                                 "parameter changes)"))
    return "\n".join(out) + "\n"


def _delta(p) -> str:
    return f" ({p['delta']:+,})" if p.get("delta") is not None else ""


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(d: Diff) -> str:
    """A pull-request comment: a summary line, then one table per kind of change."""
    line = summary(d).replace("checkpoint-incompatible", "⚠️ **checkpoint-incompatible**")
    out = [f"**archspec diff** `{d.old}` → `{d.new}`: {line}", ""]
    if not d.changed:
        return "\n".join(out)
    if d.added or d.removed or d.renamed:
        out += ["| Node | Change | Details |", "|---|---|---|"]
        out += [f"| `{a['section']}.{a['name']}` | added | {a['type']}, line {a['line']}, "
                f"{_md(a['params'] or 'no')} parameters |" for a in d.added]
        out += [f"| `{r['section']}.{r['name']}` | removed | {r['type']}, {_md(r['params'] or 'no')} parameters |"
                for r in d.removed]
        out += [f"| `{r['section']}.{r['old']}` | renamed to `{r['new']}` | line {r['line']}"
                + (f"; {_md(r['note'])}" if r["note"] else "") + " |" for r in d.renamed]
        out.append("")
    for cat, title in _TITLES.items():
        rows = [f for f in d.fields if f["category"] == cat]
        if rows:
            out += [f"**{title}**", "", "| Field | Old | New | Line |", "|---|---|---|---|"]
            out += [f"| `{f['path']}` | `{_md(_v(f['old']))}` | `{_md(_v(f['new']))}` | {f['line']} |" for f in rows]
            out.append("")
    if d.edges:
        out += ["**Edges rewired**", "", "| Field | Old | New | Line |", "|---|---|---|---|"]
        out += [f"| `{e['path']}` | {', '.join(e['old']) or '-'} | {', '.join(e['new']) or '-'} | {e['line']} |"
                for e in d.edges]
        out.append("")
    if d.shapes:
        out += ["**Shapes**", "", "| Node | Old | New | Why |", "|---|---|---|---|"]
        out += [f"| `{s['node']}` | {s['old']} | {s['new']} | "
                + ("changed itself" if s["cause"] == "own" else "upstream: " + ", ".join(f"`{u}`" for u in s["upstream"]))
                + " |" for s in d.shapes]
        out.append("")
    if d.params or d.total.get("old") != d.total.get("new"):
        out += ["**Parameters**", "", "| Node | Old | New | Δ |", "|---|---:|---:|---:|"]
        out += [f"| `{p['node']}` | {_md(p['old'] or '-')} | {_md(p['new'] or '-')} | "
                f"{'' if p['delta'] is None else format(p['delta'], '+,')} |" for p in d.params]
        t = d.total
        out.append(f"| **total** | {_md(t['old'])} | {_md(t['new'])} | "
                   f"{'' if t['delta'] is None else format(t['delta'], '+,')} |")
        out.append("")
    if d.checkpoint:
        out += ["**Checkpoint-incompatible**: a run trained on the old spec cannot load its weights into the new one:", ""]
        out += [f"- {_md(r)}" for r in d.checkpoint]
        out.append("")
    return "\n".join(out)


def render_invalid(sides: list, fmt: str) -> str:
    """What is printed when a side does not check: its diagnostics (the diff needs two valid specs)."""
    if fmt == "json":
        return json.dumps({"valid": False, "invalid": [
            {"file": c.file, "diagnostics": [x.to_dict() for x in c.diagnostics]} for c in sides]}, indent=2)
    if fmt == "markdown":
        out = []
        for c in sides:
            out += [f"**archspec diff**: `{c.file}` is not a valid spec ({len(c.errors)} "
                    f"error{'s' * (len(c.errors) != 1)}), so it cannot be compared:", "", "```"]
            out += [x.render() for x in c.diagnostics] + ["```", ""]
        return "\n".join(out)
    return "\n".join(x.render() for c in sides for x in c.diagnostics) + "\n" + "\n".join(
        f"{c.file}: invalid — {len(c.errors)} error{'s' * (len(c.errors) != 1)}; fix it to see the diff"
        for c in sides) + "\n"


def run_diff(old: str, new: str, fmt: str = "text") -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``archspec diff``: 0 no semantic change, 1 changed,
    2 a side cannot be read or is not a valid spec (its diagnostics are printed).

    Raises:
        DiffError: a side cannot be read from git.
    """
    a, b = read_side(old), read_side(new)
    bad = [c for c in (a, b) if not c.ok()]
    if bad:
        text = render_invalid(bad, fmt)
        return 2, (text if fmt in ("json", "markdown") else ""), ("" if fmt in ("json", "markdown") else text)
    d = diff_checked(a, b)
    if fmt == "json":
        out = json.dumps(d.to_dict(), indent=2, ensure_ascii=False) + "\n"
    elif fmt == "markdown":
        out = render_markdown(d)
    else:
        out = render_text(d)
    return (1 if d.changed else 0), out, ""
