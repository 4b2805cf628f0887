"""`archspec build`: the summary (text / json), diagrams, and how errors reach the user."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys

import pytest

from archspec.cli import main
from archspec.pipeline import check_file

from conftest import ROOT

pytest.importorskip("torch")

TOWER = ROOT / "specs" / "two_tower.yaml"
LATE = ROOT / "specs" / "late_fusion.yaml"

FROZEN_SPEC = """\
archspec: 1
name: frozen
inputs:
  x: {type: numeric, columns: [a, b, c]}
encoders:
  base: {type: mlp, input: x, layers: [8], trainable: false}
  top: {type: mlp, input: base, layers: [4]}
heads:
  y: {type: binary, from: top}
"""


def build(capsys, *argv):
    rc = main(["build", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------------------------------- summary


def test_summary_lists_every_node_in_order_with_shapes_and_params(spec_path, capsys):
    from archspec.build import compile_spec

    rc, out, err = build(capsys, spec_path)
    assert rc == 0, err
    checked = check_file(spec_path)
    model = compile_spec(checked)
    lines = out.splitlines()
    rows = {}
    for name in checked.graph.order:
        row = [i for i, line in enumerate(lines) if line.split() and line.split()[0] == name]
        assert len(row) == 1, f"{name} has {len(row)} rows in\n{out}"
        rows[name] = row[0]
        line = lines[row[0]]
        assert model.shapes[name].batch_shape() in line
        t, f = model.parameter_counts(name)
        assert line.split()[-2:] == [f"{t:,}", f"{f:,}"]
        for src in checked.graph.edges[name]:
            assert src in line
    assert [rows[n] for n in checked.graph.order] == sorted(rows.values())  # topological order
    total = sum(p.numel() for p in model.parameters())
    from archspec.params import count_params

    bound = "≤ " if count_params(checked).total.bound else ""  # a fitted vocabulary: the count is a bound
    assert f"Total params:     {bound}{total:,}" in out
    assert "Trainable params:" in out and "Frozen params:" in out and "MB)" in out


def test_summary_json_matches_the_model(capsys):
    from archspec.build import compile_spec

    rc, out, _ = build(capsys, LATE, "--format", "json")
    assert rc == 0
    data = json.loads(out)
    model = compile_spec(LATE)
    assert data["name"] == "late_fusion" and data["valid"] is True
    assert [n["name"] for n in data["nodes"]] == model.checked.graph.order
    by_name = {n["name"]: n for n in data["nodes"]}
    assert by_name["text_model"]["shape"] == ["B", 128] and by_name["text_model"]["type"] == "transformer"
    assert by_name["reception"] == {**by_name["reception"], "section": "fusions", "kind": "probs",
                                    "inputs": ["text_reception", "tabular_reception"], "shape": ["B", 3]}
    totals = data["totals"]
    assert totals["params"] == sum(p.numel() for p in model.parameters())
    assert totals["params"] == sum(n["trainable"] + n["frozen"] for n in data["nodes"])
    assert totals["trainable"] + totals["frozen"] == totals["params"]
    assert totals["size_mb"] == pytest.approx(totals["params"] * 4 / 2**20, abs=1e-3)
    assert data["predictions"] == ["text_reception", "tabular_reception", "reception"]


def test_frozen_parameters_are_counted_apart(tmp_path, capsys):
    spec = tmp_path / "frozen.yaml"
    spec.write_text(FROZEN_SPEC)
    rc, out, _ = build(capsys, spec, "--format", "json")
    assert rc == 0
    data = json.loads(out)
    nodes = {n["name"]: n for n in data["nodes"]}
    assert (nodes["base"]["trainable"], nodes["base"]["frozen"]) == (0, 3 * 8 + 8)
    assert (nodes["top"]["trainable"], nodes["top"]["frozen"]) == (8 * 4 + 4, 0)
    assert data["totals"]["frozen"] == 32 and data["totals"]["trainable"] == 36 + 5
    rc, out, _ = build(capsys, spec)
    assert "Frozen params:    32 (0.00 MB)" in out


def test_rich_rendering(capsys):
    pytest.importorskip("rich")
    from rich.console import Console

    from archspec.build import compile_spec
    from archspec.build_report import render_rich, summarize

    buf = io.StringIO()
    render_rich(summarize(compile_spec(TOWER)), Console(file=buf, width=160))
    text = buf.getvalue()
    for name in ("user_features", "user_tower", "item_tower", "match", "(B, 32) features", "11,616"):
        assert name in text
    assert "Total params:     23,106" in text


# ----------------------------------------------------------------------------------------- errors


def test_invalid_spec_prints_the_validate_diagnostics(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("archspec: 1\nname: m\ninputs: {x: {type: numeric, columns: [a]}}\n"
                   "heads: {y: {type: regression, from: xx}}\n")
    rc, out, err = build(capsys, bad)
    assert rc == 1 and out == ""
    expected = [d.render() for d in check_file(bad).diagnostics]
    assert expected and err.splitlines()[:len(expected)] == expected
    assert "did you mean 'x'?" in err and "Traceback" not in err

    rc, out, _ = build(capsys, bad, "--format", "json")
    assert rc == 1
    data = json.loads(out)
    assert data["valid"] is False and data["diagnostics"][0]["code"] == "E-REF"


def test_build_error_is_a_message_not_a_traceback(tmp_path, capsys):
    spec = tmp_path / "hub.yaml"
    spec.write_text("archspec: 1\nname: m\ninputs: {x: {type: image, column: p, size: [32, 32]}}\n"
                    "encoders: {e: {type: torchvision, input: x, model: resnet18, weights: IMAGENET1K_V1}}\n"
                    "heads: {y: {type: regression, from: e}}\n")
    rc, out, err = build(capsys, spec)
    assert rc == 1
    assert err.startswith("archspec: error: encoders.e: weights resnet18.IMAGENET1K_V1")
    assert "Traceback" not in err


def test_shape_error_is_a_message_not_a_traceback(tmp_path, capsys, monkeypatch):
    from torch import nn

    from archspec.registry import REGISTRIES

    def wrong_width(cfg, in_shapes, ctx):  # a buggy component: one output too many
        return nn.Linear(in_shapes[0].width, cfg.outputs + 1)

    monkeypatch.setitem(REGISTRIES["head"].builders, "regression", wrong_width)
    spec = tmp_path / "m.yaml"
    spec.write_text("archspec: 1\nname: m\ninputs: {x: {type: numeric, columns: [a, b]}}\n"
                    "heads: {y: {type: regression, from: x}}\n")
    rc, _, err = build(capsys, spec)
    assert rc == 1
    assert err.startswith("archspec: error: heads.y (regression) outputs (B, 2) but the checker inferred (B, 1)")


def test_export_needs_an_output_directory(capsys):
    rc, out, err = build(capsys, TOWER, "--export", "onnx")
    assert rc == 2 and "--out" in err and out == ""


# --------------------------------------------------------------------------------------- diagrams


def _edges(checked):
    g = checked.graph
    return [(s, n) for n in g.order for s in g.edges[n]]


def test_mermaid_has_every_node_and_edge(spec_path, capsys):
    rc, out, _ = build(capsys, spec_path, "--graph", "mermaid")
    assert rc == 0
    checked = check_file(spec_path)
    g = checked.graph
    assert out.splitlines()[:4] == ["---", f"title: {checked.spec.name}", "---", "flowchart LR"]
    for name in g.order:
        (decl,) = [line.strip() for line in out.splitlines() if line.strip().startswith(f"n_{name}[")
                   or line.strip().startswith(f"n_{name}(") or line.strip().startswith(f"n_{name}{{")]
        assert f'"{name}<br/>{g.nodes[name].type}<br/>{checked.shapes[name]}"' in decl
    edges = re.findall(r"^\s*n_(\w+) (-->|-\.->)(?:\|(\w+)\|)? n_(\w+)$", out, re.M)
    assert sorted((s, d) for s, _, _, d in edges) == sorted(_edges(checked))
    for src, arrow, label, dst in edges:
        assert (arrow == "-.->") == g.is_late(dst), (src, dst)  # decisions dashed, features solid
        if g.nodes[dst].type == "similarity":
            assert label == ("query" if src == g.nodes[dst].query else "candidate")
    assert out.count("subgraph ") == out.count("\n    end")


def test_mermaid_section_outlines_and_late_edges(capsys):
    rc, out, _ = build(capsys, LATE, "--graph", "mermaid")
    assert rc == 0
    assert 'n_film_text[/"film_text<br/>text<br/>(B, 48) tokens"/]' in out
    assert 'n_text_model["text_model<br/>transformer<br/>(B, 128) features"]' in out
    assert 'n_reception{{"reception<br/>late<br/>(B, 3) probs"}}' in out
    assert 'n_text_reception(["text_reception<br/>multiclass<br/>(B, 3) logits"])' in out
    assert "n_text_model --> n_text_reception" in out
    assert "n_text_reception -.-> n_reception" in out and "n_tabular_reception -.-> n_reception" in out


def test_dot_is_plausible(spec_path, capsys):
    rc, out, _ = build(capsys, spec_path, "--graph", "dot")
    assert rc == 0
    checked = check_file(spec_path)
    assert out.startswith(f'digraph "{checked.spec.name}" {{') and out.rstrip().endswith("}")
    assert out.count("{") == out.count("}")
    for name in checked.graph.order:
        assert re.search(rf'^\s*"{name}" \[shape=', out, re.M), name
    for src, dst in _edges(checked):
        m = re.search(rf'^\s*"{src}" -> "{dst}"( \[[^\]]*\])?;$', out, re.M)
        assert m, (src, dst)
        assert ("style=dashed" in (m.group(1) or "")) == checked.graph.is_late(dst)
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg"], input=out, text=True, check=True, capture_output=True)


def test_diagram_doctests():
    import doctest

    from archspec import diagram

    result = doctest.testmod(diagram, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_graph_is_written_to_out(tmp_path, capsys):
    rc, out, err = build(capsys, TOWER, "--graph", "dot", "--out", tmp_path)
    assert rc == 0 and out == ""
    path = tmp_path / "two_tower.dot"
    assert f"wrote {path}" in err
    assert '"user_tower" -> "match" [label="query"];' in path.read_text()


def test_graph_does_not_import_torch():
    code = ("import sys; from archspec.cli import main; "
            f"rc = main(['build', {str(TOWER)!r}, '--graph', 'mermaid']); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "n_user_tower -->|query| n_match" in proc.stdout
