"""A spec is untrusted input: it must not run code, exhaust memory or overflow the stack.

No timing assertions: whether the loader stops early is checked by counting the nodes it builds.
"""

from __future__ import annotations

import math

import pytest

from archspec import load
from archspec.cli import main
from archspec.errors import SpecError
from archspec.pipeline import check_file, check_text

from conftest import ROOT

VALID = (ROOT / "specs" / "two_tower.yaml").read_text()


def only_code(result) -> str:
    (d,) = result.diagnostics
    return d.code


# ---------------------------------------------------------------------------- code execution


@pytest.mark.parametrize("payload", [
    '!!python/object/apply:os.system ["touch {marker}"]',
    '!!python/object/new:os.system ["touch {marker}"]',
    "!!python/object/apply:subprocess.check_call [[touch, {marker}]]",
    '!!python/name:os.system ""',
    "!!python/module:os ''",
])
def test_python_tags_do_not_run(payload, tmp_path):
    marker = tmp_path / "pwned"
    text = VALID.replace("name: two_tower", "name: " + payload.format(marker=marker))
    spec = tmp_path / "evil.yaml"
    spec.write_text(text)
    for result in (check_text(text), check_file(spec)):
        assert only_code(result) == "E-YAML-TAG"
    assert main(["validate", str(spec)]) == 1
    assert not marker.exists()


def test_python_tag_as_a_key_or_in_a_list_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    text = f'? !!python/object/apply:os.system ["touch {marker}"]\n: 1\nx: [!!python/object/apply:os.system ["touch {marker}"]]\n'
    result = check_text(text)
    assert {d.code for d in result.diagnostics} <= {"E-YAML-TAG", "E-YAML-KEY"}
    assert result.diagnostics
    assert not marker.exists()


def test_no_spec_field_names_an_import_path():
    # the spec language never takes a Python target (Hydra's `_target_`, torchtune's `_component_`)
    for key in ("_target_", "_component_", "trust_remote_code"):
        text = VALID.replace("  user_tower: {type: mlp,", f"  user_tower: {{{key}: os.system, type: mlp,")
        assert only_code(check_text(text)) == "E-SCHEMA-UNKNOWN"


# ---------------------------------------------------------------------------- alias bombs

LAUGHS = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 10))  # 10**10 leaves


class CountingBuilder(load._Builder):
    calls = 0

    def build(self, node, path):
        CountingBuilder.calls += 1
        return super().build(node, path)


def test_billion_laughs_is_refused_without_expanding(monkeypatch):
    monkeypatch.setattr(load, "_Builder", CountingBuilder)
    CountingBuilder.calls = 0
    result = check_text(LAUGHS)
    assert only_code(result) == "E-YAML-ALIAS"
    # it stopped at the cap instead of building 10**10 values
    assert CountingBuilder.calls == load.MAX_NODES + 1


def test_the_node_cap_is_what_stops_expansion(monkeypatch):
    monkeypatch.setattr(load, "MAX_NODES", 50)
    small = "a: &a [1, 2, 3, 4, 5, 6, 7, 8]\nb: [*a, *a, *a, *a, *a, *a, *a, *a]\n"  # 82 nodes expanded
    with pytest.raises(SpecError) as info:
        load.load_text(small)
    assert [d.code for d in info.value.diagnostics] == ["E-YAML-ALIAS"]
    monkeypatch.setattr(load, "MAX_NODES", 100)
    assert load.load_text(small)[0]["b"][7] == [1, 2, 3, 4, 5, 6, 7, 8]


def test_alias_bomb_in_a_spec_file_via_the_cli(tmp_path, capsys):
    p = tmp_path / "bomb.yaml"
    p.write_text(LAUGHS + VALID.split("\n", 1)[1])
    assert main(["validate", "--format", "json", str(p)]) == 1
    assert "E-YAML-ALIAS" in capsys.readouterr().out


# ---------------------------------------------------------------------------- deep nesting


@pytest.mark.parametrize("text", [
    "a: " + "[" * 10_000 + "]" * 10_000 + "\n",
    "a: " + "[" * 10_000 + "\n",  # never closed
    "a: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n",
    "a:\n  " + "- " * 10_000 + "x\n",
    "".join(" " * i + "a:\n" for i in range(1_400)),  # block mappings, as deep as fits in 1 MiB
], ids=["flow-seq", "flow-seq-unclosed", "flow-map", "block-seq", "block-map"])
def test_deep_nesting_is_refused_without_recursion_error(text):
    assert only_code(check_text(text)) == "E-YAML-DEPTH"


def test_ten_thousand_levels_of_block_mappings(monkeypatch):
    # 10,000 levels of `a:` block mappings need ~50 MB of indentation: the size cap refuses that
    # first; with the cap lifted, the depth cap stops the composer (no RecursionError)
    text = "".join(" " * i + "a:\n" for i in range(10_000))
    assert only_code(check_text(text)) == "E-YAML-SIZE"
    monkeypatch.setattr(load, "MAX_BYTES", len(text) + 1)
    assert only_code(check_text(text)) == "E-YAML-DEPTH"


# ---------------------------------------------------------------------------- size


def test_two_mib_file_is_refused(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text(VALID + "description: '" + "x" * (2 << 20) + "'\n")
    assert only_code(check_file(p)) == "E-YAML-SIZE"
    assert only_code(check_text(p.read_text())) == "E-YAML-SIZE"


def test_huge_numbers_do_not_crash():
    text = VALID.replace("layers: [128, 64, 32]}\n  item", "layers: [128, 64, " + "9" * 5000 + "]}\n  item")
    result = check_text(text)
    assert [d.code for d in result.diagnostics] == ["E-SCHEMA-TYPE"]


# ---------------------------------------------------------------------------- YAML 1.2 scalars in a spec


def test_yaml_1_2_scalars_in_a_spec():
    data = check_text(
        "lr: 1e-3\nflag: no\nyes_: yes\non_: on\noff_: off\noct: 0o17\nhex: 0x1f\ntop: .inf\nnone: ~\n").data
    assert data["lr"] == 0.001 and isinstance(data["lr"], float)
    assert (data["flag"], data["yes_"], data["on_"], data["off_"]) == ("no", "yes", "on", "off")
    assert (data["oct"], data["hex"]) == (15, 31)
    assert data["top"] == math.inf and data["none"] is None


def test_norway_problem_a_country_code_stays_text():
    text = VALID.replace("columns: [user_ratings_log,", "columns: [no, user_ratings_log,")
    result = check_text(text)
    assert result.ok()
    assert result.spec.inputs["user_features"].columns[0] == "no"


def test_learning_rate_in_exponent_notation_is_a_number():
    text = VALID.replace("  batch_size: 256", "  optimizer: {type: adam, lr: 1e-3}\n  batch_size: 256")
    result = check_text(text)
    assert result.ok() and result.spec.training.optimizer.lr == 0.001
