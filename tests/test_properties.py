"""Property-based tests: mutate the shipped specs; the checker answers with diagnostics, never a crash.

Every result is a :class:`~archspec.pipeline.Checked` whose diagnostics have a known code, a known
severity, a position (line and column ≥ 1), a message and a hint. Mutations work on the loaded data
(drop keys, retype values, rewire references, inject cycles) and on the text (duplicate lines,
tags, aliases, deep nesting, random characters and bytes).
"""

from __future__ import annotations

import copy
import io
import json
import re
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archspec.cli import main
from archspec.errors import SEVERITIES
from archspec.load import load_text
from archspec.pipeline import Checked, check_text

from conftest import ROOT, SPECS

TEXTS = {p.stem: p.read_text(encoding="utf-8") for p in SPECS}
DATA = {name: load_text(text)[0] for name, text in TEXTS.items()}
SECTIONS = ("inputs", "encoders", "fusions", "heads")
REF_KEYS = ("input", "from", "query", "candidate")
KNOWN_CODES = {code for py in (ROOT / "src" / "archspec").rglob("*.py")
               for code in re.findall(r"""["']([EWN]-[A-Z0-9]+(?:-[A-Z0-9]+)*)["']""", py.read_text())}

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

WORDS = ["mlp", "late", "early", "text", "numeric", "image", "cross_entropy", "nll", "multiclass",
         "similarity", "shared", "user_tower", "accuracy", "recall@10", "type", "from", "inputs", "loss",
         "yes", "no", "~", "1e-3", ".nan", "-1", "0", "", "a" * 70, "héllo", "x y"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10 ** 6), 10 ** 6), st.floats(), st.sampled_from(WORDS),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(WORDS), st.text(max_size=8)), inner, max_size=4)),
    max_leaves=12,
)


def assert_well_formed(result, *, parsed_file: bool = True) -> None:
    assert isinstance(result, Checked)
    for d in result.diagnostics:
        assert d.code in KNOWN_CODES, d
        assert d.severity in SEVERITIES, d
        assert d.message and d.hint, d
        if parsed_file:
            assert d.line >= 1 and d.col >= 1, d
        assert isinstance(d.render(), str)
    assert result.ok() == (not result.errors)
    if result.ok():
        assert result.spec is not None and result.graph is not None
        assert set(result.graph.order) == set(result.graph.nodes)


# ---------------------------------------------------------------------------- data mutations


def paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, prefix + (i,))


def get(value, path):
    for part in path:
        value = value[part]
    return value


def node_names(data) -> list[str]:
    return [n for s in SECTIONS if isinstance(data.get(s), dict) for n in data[s]]


def reference_slots(data) -> list[tuple]:
    """Paths of every reference to a node: `input`, `from`, `query`, `candidate`, `inputs[i]`."""
    out = []
    for s in SECTIONS:
        for name, node in (data.get(s) or {}).items() if isinstance(data.get(s), dict) else ():
            if not isinstance(node, dict):
                continue
            out += [(s, name, k) for k in REF_KEYS if k in node]
            if isinstance(node.get("inputs"), list):
                out += [(s, name, "inputs", i) for i in range(len(node["inputs"]))]
    return out


def dump(data, style: int) -> str:
    if style == 0:
        return json.dumps(data, allow_nan=True)  # JSON is YAML
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=style == 2)


@st.composite
def mutated_spec(draw):
    name = draw(st.sampled_from(sorted(DATA)))
    data = copy.deepcopy(DATA[name])
    for _ in range(draw(st.integers(1, 4))):
        all_paths = list(paths(data))[1:]
        op = draw(st.sampled_from(["drop", "retype", "rename", "rewire", "cycle", "add"]))
        if op in ("drop", "retype", "add"):
            path = draw(st.sampled_from(all_paths))
            parent = get(data, path[:-1])
            if op == "drop":
                del parent[path[-1]]
            elif op == "retype":
                parent[path[-1]] = draw(VALUES)
            elif isinstance(parent, dict):
                parent[draw(st.sampled_from(WORDS + ["trust_remote_code", "_target_"]))] = draw(VALUES)
            continue
        slots = reference_slots(data)
        if not slots:
            continue
        path = draw(st.sampled_from(slots))
        names = node_names(data)
        parent = get(data, path[:-1])
        if op == "rename":  # a name that is close to, or nothing like, a real node
            base = draw(st.sampled_from(names or ["x"]))
            parent[path[-1]] = draw(st.sampled_from([base[:-1], base + "s", base.upper(), base[::-1], "nowhere"]))
        elif op == "rewire":
            parent[path[-1]] = draw(st.sampled_from(names or ["x"]))
        else:  # cycle: the node reads itself, or a node that (eventually) reads it
            me = path[1]
            readers = [s[1] for s in reference_slots(data) if get(data, s) == me]
            parent[path[-1]] = draw(st.sampled_from(readers + [me]))
    return dump(data, draw(st.integers(0, 2)))


@FAST
@given(mutated_spec())
def test_mutated_specs_give_diagnostics_not_crashes(text):
    assert_well_formed(check_text(text, "mutant.yaml"))


@FAST
@given(st.sampled_from(sorted(TEXTS)), st.data())
def test_every_reference_renamed_is_reported_or_resolves(name, data):
    spec = copy.deepcopy(DATA[name])
    slot = data.draw(st.sampled_from(reference_slots(spec)))
    parent = get(spec, slot[:-1])
    new = data.draw(st.one_of(st.sampled_from(node_names(spec)), st.from_regex(r"\A[a-z_]{1,12}\Z")))
    parent[slot[-1]] = new
    result = check_text(dump(spec, 1))
    assert_well_formed(result)
    if new not in node_names(spec):
        assert any(d.code == "E-REF" and d.path == slot for d in result.diagnostics), result.diagnostics


@FAST
@given(st.sampled_from(sorted(TEXTS)), st.data())
def test_dropping_a_required_key_is_reported_where_it_was(name, data):
    spec = copy.deepcopy(DATA[name])
    section = data.draw(st.sampled_from([s for s in SECTIONS if spec.get(s)]))
    node = data.draw(st.sampled_from(sorted(spec[section])))
    key = data.draw(st.sampled_from(sorted(spec[section][node])))
    del spec[section][node][key]
    result = check_text(dump(spec, 1))
    assert_well_formed(result)
    if key in ("type", "from", "input", "inputs", "query", "candidate", "column", "columns"):
        assert any(d.code == "E-SCHEMA-MISSING" and d.path[:2] == (section, node) for d in result.errors)


# ---------------------------------------------------------------------------- text mutations

SNIPPETS = [
    "!!python/object/apply:os.system [\"true\"] ", "!include x.yaml ", "&anchor ", "*anchor ", "*nowhere ",
    "<<: *anchor\n", "? [a, b]\n: 1\n", "---\n", "...\n", "\t", "\x00", "\x07", "\ufeff", "\u2028", "\x85",
    "[" * 100, "{" * 100, "]", "}", ": ", "- ", "'", '"', "|\n", ">\n", "#", "%YAML 1.1\n", "%TAG ! tag:x:\n",
]


@st.composite
def mutated_text(draw):
    text = TEXTS[draw(st.sampled_from(sorted(TEXTS)))]
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["dup-line", "snippet", "chars", "truncate", "delete"]))
        pos = draw(st.integers(0, len(text)))
        if op == "dup-line" and text:
            lines = text.splitlines(keepends=True)
            i = draw(st.integers(0, len(lines) - 1))
            text = "".join(lines[: i + 1] + [lines[i]] + lines[i + 1:])
        elif op == "snippet":
            text = text[:pos] + draw(st.sampled_from(SNIPPETS)) + text[pos:]
        elif op == "chars":
            text = text[:pos] + draw(st.text(max_size=8)) + text[pos:]
        elif op == "truncate":
            text = text[:pos]
        else:
            text = text[:pos] + text[pos + draw(st.integers(1, 30)):]
    return text


@FAST
@given(mutated_text())
def test_mutated_text_gives_diagnostics_not_crashes(text):
    assert_well_formed(check_text(text, "mutant.yaml"))


NESTERS = {
    "flow-seq": lambda n: "deep: " + "[" * n + "]" * n + "\n",
    "flow-map": lambda n: "deep: " + "{a: " * n + "1" + "}" * n + "\n",
    "block-seq": lambda n: "deep:\n  " + "- " * n + "x\n",
    "block-map": lambda n: "deep:\n" + "".join(" " * (i + 1) + "a:\n" for i in range(n)),
}


@FEW
@given(st.sampled_from(sorted(TEXTS)), st.integers(0, 80), st.sampled_from(sorted(NESTERS)),
       st.integers(65, 1000))
def test_deep_nesting_anywhere(name, line, nester, depth):
    lines = TEXTS[name].splitlines(keepends=True)
    # at a line that starts a top-level key (or the end), so the nesting is part of the document
    starts = [i for i, ln in enumerate(lines) if re.match(r"[a-z]", ln)] + [len(lines)]
    at = starts[line % len(starts)]
    result = check_text("".join(lines[:at]) + NESTERS[nester](depth) + "".join(lines[at:]))
    assert_well_formed(result)
    assert "E-YAML-DEPTH" in {d.code for d in result.errors}


@FEW
@given(st.sampled_from(sorted(TEXTS)), st.integers(1, 6), st.integers(2, 12))
def test_aliases_expand_within_bounds(name, depth, fanout):
    anchors = "x0: &x0 [a, b]\n" + "".join(
        f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * fanout) + "]\n" for i in range(1, depth + 1))
    result = check_text(anchors + TEXTS[name])
    assert_well_formed(result)
    codes = {d.code for d in result.diagnostics}
    assert codes & {"E-YAML-ALIAS", "E-SCHEMA-UNKNOWN"}  # refused, or read and the keys reported


@FEW
@given(st.sampled_from(sorted(TEXTS)), st.data())
def test_random_bytes_through_the_cli(name, data):
    raw = bytearray(TEXTS[name].encode("utf-8"))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.yaml"
        path.write_bytes(bytes(raw))
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["validate", "--format", data.draw(st.sampled_from(["text", "json", "github"])), str(path)])
    assert code in (0, 1)
    assert "Traceback" not in out.getvalue() + err.getvalue()


@FEW
@given(mutated_spec())
def test_mutated_specs_through_the_cli(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(text, encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["validate", "--format", "json", str(path)])
    assert code in (0, 1)
    (report,) = json.loads(out.getvalue())
    assert report["valid"] == (code == 0)
    for d in report["diagnostics"]:
        assert d["code"] in KNOWN_CODES and d["line"] >= 1
