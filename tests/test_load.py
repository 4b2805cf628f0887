"""Stage 1: the hardened YAML loader — YAML 1.2 scalars, the source map, and what it refuses."""

from __future__ import annotations

import doctest
import math

import pytest

from archspec import load
from archspec.errors import SpecError
from archspec.load import SourceMap, load_file, load_text, resolve_scalar


def codes(text: str) -> list[tuple[str, int, int]]:
    with pytest.raises(SpecError) as info:
        load_text(text)
    return [(d.code, d.line, d.col) for d in info.value.diagnostics]


def test_module_doctests():
    result = doctest.testmod(load, verbose=False)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------------------- YAML 1.2 scalars


@pytest.mark.parametrize("text, value", [
    ("1e-3", 0.001), ("1.0e-3", 0.001), ("-2.5", -2.5), (".5", 0.5), ("1.", 1.0), ("+3", 3), ("-0", 0),
    ("0o17", 15), ("0x1f", 31), ("0x1F", 31), ("017", 17),
    (".inf", math.inf), ("-.Inf", -math.inf), ("+.INF", math.inf),
    ("~", None), ("null", None), ("Null", None), ("", None),
    ("true", True), ("False", False), ("TRUE", True),
    # YAML 1.1 spellings that YAML 1.2 reads as text
    ("yes", "yes"), ("no", "no"), ("on", "on"), ("off", "off"), ("y", "y"), ("n", "n"),
    ("0b101", "0b101"), ("1_000", "1_000"), ("12:30", "12:30"), ("0o8", "0o8"), ("0xg", "0xg"),
    ("2024-01-01", "2024-01-01"), ("nan", "nan"), ("inf", "inf"),
])
def test_plain_scalars_follow_the_yaml_1_2_core_schema(text, value):
    assert resolve_scalar(text) == value
    assert type(resolve_scalar(text)) is type(value)


def test_nan_is_a_float_nan():
    assert math.isnan(resolve_scalar(".nan")) and math.isnan(resolve_scalar(".NaN"))


def test_an_integer_too_long_for_python_does_not_crash():
    assert resolve_scalar("9" * 5000) == math.inf


def test_quoted_scalars_stay_text():
    data, _ = load_text("a: '1e-3'\nb: \"true\"\nc: '~'\nd: !!str 12\n")
    assert data == {"a": "1e-3", "b": "true", "c": "~", "d": "12"}


def test_document_values():
    data, _ = load_text("lr: 1e-3\nflag: no\nmode: 0o17\nmask: 0x1f\ntop: .inf\nnothing: ~\nlist: [1, yes]\n")
    assert data == {"lr": 0.001, "flag": "no", "mode": 15, "mask": 31, "top": math.inf, "nothing": None,
                    "list": [1, "yes"]}


def test_keys_are_strings():
    data, _ = load_text("1: a\ntrue: b\n1.5: c\n~: d\n")
    assert data == {"1": "a", "true": "b", "1.5": "c", "~": "d"}


def test_byte_order_mark_is_accepted():
    data, _ = load_text("\ufeffa: 1\n")
    assert data == {"a": 1}


# ---------------------------------------------------------------------------- source map


def test_source_map_has_key_and_value_positions():
    text = "heads:\n  sentiment:\n    from: shared\n    metrics: [accuracy, f1]\n"
    _, smap = load_text(text, "x.yaml")
    assert smap.file == "x.yaml"
    assert smap.locate(("heads", "sentiment", "from")) == (3, 11)
    assert smap.locate(("heads", "sentiment", "from"), key=True) == (3, 5)
    assert smap.locate(("heads", "sentiment", "metrics", 1)) == (4, 25)
    assert smap.locate(("heads", "sentiment"), key=True) == (2, 3)


def test_locate_falls_back_to_the_nearest_ancestor():
    _, smap = load_text("a:\n  b: {c: 1}\n")
    assert smap.locate(("a", "b", "missing", "deeper")) == smap.locate(("a", "b")) == (2, 6)
    assert smap.locate(("nowhere",)) == (1, 1)
    assert SourceMap().locate(("x",)) == (1, 1)


def test_positions_of_flow_and_block_styles_agree():
    _, block = load_text("n:\n  type: mlp\n  layers: [4]\n")
    _, flow = load_text("n: {type: mlp, layers: [4]}\n")
    assert block.locate(("n", "layers", 0)) == (3, 12)
    assert flow.locate(("n", "layers", 0)) == (1, 25)


# ---------------------------------------------------------------------------- refusals


def test_duplicate_keys_are_rejected_at_the_second_one():
    assert codes("a: 1\nb: 2\na: 3\n") == [("E-YAML-DUPKEY", 3, 1)]


def test_duplicate_keys_in_nested_and_flow_mappings():
    with pytest.raises(SpecError) as info:
        load_text("x:\n  y: 1\n  y: 2\nz: {p: 1, p: 2}\n")
    diags = info.value.diagnostics
    assert [(d.code, d.path, d.line, d.col) for d in diags] == [
        ("E-YAML-DUPKEY", ("x", "y"), 3, 3), ("E-YAML-DUPKEY", ("z", "p"), 4, 11)]
    assert "first defined at line 2" in diags[0].message


def test_keys_equal_after_resolution_are_duplicates():
    assert codes("1: a\n'1': b\n") == [("E-YAML-DUPKEY", 2, 1)]


def test_every_loading_problem_is_reported_at_once():
    got = codes("a: !!python/name:os.system x\nb: 1\nb: 2\nc:\n  <<: {d: 1}\n")
    assert got == [("E-YAML-TAG", 1, 4), ("E-YAML-DUPKEY", 3, 1), ("E-YAML-MERGE", 5, 3)]


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system", "!!python/object:object", "!!binary",
                                 "!!set", "!!omap", "!!timestamp", "!custom", "!<tag:example.com:x>",
                                 "!!float", "!!int", "!!bool", "!!null"])
def test_explicit_tags_are_rejected(tag):
    assert codes(f"a: {tag} '1'\n") == [("E-YAML-TAG", 1, 4)]


def test_plain_data_tags_are_allowed():
    assert load_text("a: !!str yes\nb: !!map {c: 1}\nd: !!seq [1]\n")[0] == {"a": "yes", "b": {"c": 1}, "d": [1]}


def test_merge_keys_are_rejected():
    assert codes("base: &b {x: 1}\nc:\n  <<: *b\n  y: 2\n") == [("E-YAML-MERGE", 3, 3)]
    assert codes("c: {<<: {x: 1}}\n") == [("E-YAML-MERGE", 1, 5)]


def test_collection_keys_are_rejected():
    assert codes("? [a, b]\n: 1\n") == [("E-YAML-KEY", 1, 3)]
    assert codes("? {a: 1}\n: 1\n") == [("E-YAML-KEY", 1, 3)]


def test_small_aliases_are_allowed():
    data, smap = load_text("defaults: &d {lr: 0.1}\nuse: *d\n")
    assert data == {"defaults": {"lr": 0.1}, "use": {"lr": 0.1}}
    assert smap.locate(("use", "lr")) == (1, 19)  # an alias's values are where the anchor wrote them


@pytest.mark.parametrize("text, code, pos", [
    ("", "E-YAML-DOC", (1, 1)),
    ("# just a comment\n", "E-YAML-DOC", (1, 1)),
    ("a: 1\n---\nb: 2\n", "E-YAML-DOC", (2, 1)),
    ("a: [1, 2\n", "E-YAML-SYNTAX", (1, 4)),
    ("a: 'unterminated\n", "E-YAML-SYNTAX", (1, 4)),
    ("a:\n\t- 1\n", "E-YAML-SYNTAX", (2, 1)),
    ("a: *nowhere\n", "E-YAML-SYNTAX", (1, 4)),
    ("a: 1\n b: 2\n", "E-YAML-SYNTAX", (2, 3)),
    ("a: b: c\n", "E-YAML-SYNTAX", (1, 5)),
    ("a: @x\n", "E-YAML-SYNTAX", (1, 4)),
    ("a: 1\x00\n", "E-YAML-SYNTAX", (1, 5)),
    ("a: 1\nb: x\x07y\n", "E-YAML-SYNTAX", (2, 5)),
])
def test_syntax_and_document_errors(text, code, pos):
    (got,) = codes(text)
    assert got == (code, *pos)


def test_syntax_errors_say_what_to_do():
    for text in ["a: [1, 2\n", "a:\n\t- 1\n", "a: *x\n", "a: 1\n b: 2\n"]:
        with pytest.raises(SpecError) as info:
            load_text(text)
        (d,) = info.value.diagnostics
        assert d.hint and d.hint != "fix the YAML syntax at this position", (text, d.render())


def test_depth_cap():
    ok = "a: " + "[" * (load.MAX_DEPTH - 1) + "]" * (load.MAX_DEPTH - 1) + "\n"
    load_text(ok)
    assert codes("a: " + "[" * load.MAX_DEPTH + "]" * load.MAX_DEPTH + "\n")[0][0] == "E-YAML-DEPTH"


def test_size_cap_counts_utf8_bytes():
    text = "a: '" + "é" * (load.MAX_BYTES // 2) + "'\n"  # fewer characters than MAX_BYTES, more bytes
    assert len(text) < load.MAX_BYTES
    assert codes(text) == [("E-YAML-SIZE", 1, 1)]


def test_spec_error_message_names_the_first_error():
    with pytest.raises(SpecError) as info:
        load_text("a: 1\na: 2\nb: 1\nb: 2\n", "s.yaml")
    assert str(info.value).startswith("s.yaml:2:1: error[E-YAML-DUPKEY]: a: duplicate key 'a'")
    assert str(info.value).endswith("(+1 more)")
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------------------- files


def test_load_file_reads_utf8(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: café\n", encoding="utf-8")
    data, smap = load_file(p)
    assert data == {"name": "café"} and smap.file == str(p)


def test_load_file_rejects_other_encodings_with_the_position(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_bytes(b"a: 1\nname: caf\xe9\n")
    with pytest.raises(SpecError) as info:
        load_file(p)
    (d,) = info.value.diagnostics
    assert (d.code, d.line, d.col) == ("E-YAML-SYNTAX", 2, 10)
    assert "0xe9" in d.message and "UTF-8" in d.hint


def test_load_file_missing_and_directory(tmp_path):
    for path in (tmp_path / "nope.yaml", tmp_path):
        with pytest.raises(SpecError) as info:
            load_file(path)
        (d,) = info.value.diagnostics
        assert d.code == "E-FILE" and d.line == 0 and str(path) in d.message


def test_load_file_size_cap_reads_no_more_than_needed(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_bytes(b"#" * (load.MAX_BYTES + 10))
    with pytest.raises(SpecError) as info:
        load_file(p)
    assert [d.code for d in info.value.diagnostics] == ["E-YAML-SIZE"]
