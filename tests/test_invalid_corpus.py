"""The invalid-spec corpus: one mistake per file, its exact diagnostics in the file's header.

Each ``tests/invalid/*.yaml`` starts with one ``# expect:`` line per diagnostic::

    # expect: error[E-REF] 12:11 heads.sentiment.from

and the checker must report exactly that set (severity, code, line:col, path) — not a superset.
Cases that cannot be committed as files (a 2 MiB spec, control characters, bytes that are not
UTF-8, a missing file) are generated below. A meta-test checks that every diagnostic code that
appears in the source is exercised by at least one case.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from archspec.errors import SEVERITIES, format_path
from archspec.pipeline import check_file

from conftest import ROOT

INVALID = ROOT / "tests" / "invalid"
CORPUS = sorted(INVALID.glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (error|warning|note)\[([A-Z][A-Z0-9-]*)\] (\d+):(\d+) (\S+)$")
CODE_IN_SOURCE = re.compile(r"""["']([EWN]-[A-Z0-9]+(?:-[A-Z0-9]+)*)["']""")


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path, monkeypatch):
    """Hermetic Hugging Face cache: a hub model is never 'already downloaded' in these tests."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))


def expectations(path) -> set[tuple]:
    out = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("# expect:"):
            continue
        m = EXPECT.match(line)
        assert m, f"{path.name}: malformed expect line: {line!r}"
        sev, code, ln, col, where = m.groups()
        out.add((sev, code, int(ln), int(col), where))
    return out


def found(result) -> set[tuple]:
    return {(d.severity, d.code, d.line, d.col, format_path(d.path)) for d in result.diagnostics}


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 45


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_invalid_spec_reports_exactly_the_expected_diagnostics(path):
    expected = expectations(path)
    assert expected, f"{path.name} has no `# expect:` header"
    result = check_file(path)
    assert found(result) == expected
    for d in result.diagnostics:
        assert d.severity in SEVERITIES
        assert d.message and d.hint, f"every diagnostic says what is wrong and what to do: {d.render()}"
        assert d.line >= 1 and d.col >= 1
    if any(sev == "error" for sev, *_ in expected):
        assert not result.ok()
    else:  # warnings and notes only: the spec is usable, `--strict` refuses warnings
        assert result.ok() and result.spec is not None
        assert result.ok(strict=True) == all(sev == "note" for sev, *_ in expected)


# ---------------------------------------------------------------------------- generated cases


def _big(tmp_path):
    p = tmp_path / "big.yaml"
    filler = "# " + "x" * 98 + "\n"
    p.write_text("archspec: 1\nname: big\n" + filler * (2 * 1024 * 1024 // len(filler)))
    return p


def _control_char(tmp_path):
    p = tmp_path / "control.yaml"
    p.write_bytes(b"archspec: 1\nname: a\x01b\n")
    return p


def _not_utf8(tmp_path):
    p = tmp_path / "latin1.yaml"
    p.write_bytes("archspec: 1\nname: café\n".encode("latin-1"))
    return p


def _missing(tmp_path):
    return tmp_path / "no_such_spec.yaml"


def _directory(tmp_path):
    return tmp_path


GENERATED = {
    "size_2mib": (_big, {("error", "E-YAML-SIZE", 1, 1, "<root>")}),
    "control_character": (_control_char, {("error", "E-YAML-SYNTAX", 2, 8, "<root>")}),
    "not_utf8": (_not_utf8, {("error", "E-YAML-SYNTAX", 2, 10, "<root>")}),
    "missing_file": (_missing, {("error", "E-FILE", 0, 0, "<root>")}),
    "directory": (_directory, {("error", "E-FILE", 0, 0, "<root>")}),
}


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_invalid_case(name, tmp_path):
    make, expected = GENERATED[name]
    result = check_file(make(tmp_path))
    assert found(result) == expected
    assert all(d.hint for d in result.diagnostics)


# ---------------------------------------------------------------------------- exact messages

PINNED = {
    "ref_typo": "ref_typo.yaml:12:11: error[E-REF]: heads.sentiment.from: unknown node 'bga' — did you mean 'bag'?",
    "unknown_type_encoder": (
        "unknown_type_encoder.yaml:8:15: error[E-UNKNOWN-TYPE]: encoders.mlp.type: unknown encoder type 'mpl' — "
        "did you mean 'mlp'? known: cnn, embedding, embedding_bag, identity, log_mel, mlp, torchvision, transformer"),
    "schema_unknown_key_typo": (
        "schema_unknown_key_typo.yaml:8:51: error[E-SCHEMA-UNKNOWN]: encoders.mlp.activaton: unknown key "
        "'activaton' — did you mean 'activation'?"),
    "schema_unknown_section": (
        "schema_unknown_section.yaml:14:1: error[E-SCHEMA-UNKNOWN]: trainer: unknown key 'trainer' — "
        "did you mean 'training'?"),
    "metric_unknown_typo": (
        "metric_unknown_typo.yaml:14:15: error[E-METRIC]: heads.sentiment.metrics[0]: unknown metric 'acuracy' — "
        "did you mean 'accuracy'?"),
    "schema_type_yes_is_text": (
        "schema_type_yes_is_text.yaml:8:65: error[E-SCHEMA-TYPE]: encoders.bag.trainable: expected true or false, "
        "got 'yes' — write true or false (YAML 1.2: yes/no/on/off are text)"),
    "yaml_dupkey_node": (
        "yaml_dupkey_node.yaml:14:3: error[E-YAML-DUPKEY]: heads.sentiment: duplicate key 'sentiment' (first "
        "defined at line 10) — remove one of them; YAML loaders that keep the last one silently lose data"),
    "yaml_syntax_unclosed_flow": (
        "yaml_syntax_unclosed_flow.yaml:13:14: error[E-YAML-SYNTAX]: flow sequence opened here is never closed "
        "(expected ',' or ']', but got '<stream end>') — close it (a missing ']', '}' or quote)"),
    "cycle_two_encoders": (
        "cycle_two_encoders.yaml:9:30: error[E-CYCLE]: encoders.second.input: cycle: second → first → second "
        "(each node feeds the next) — a spec is a directed acyclic graph; break the cycle"),
    "late_weights_sum": (
        "late_weights_sum.yaml:18:14: error[E-LATE-WEIGHTS]: fusions.topic.weights: weights sum to 1.2, not 1: "
        "the fused probabilities would not sum to 1 — rescale them to sum to 1"),
    "softmax_ce_late_probs": (
        "softmax_ce_late_probs.yaml:18:18: error[E-SOFTMAX-CE]: fusions.topic.loss.type: cross_entropy applies a "
        "softmax, but this late fusion (weighted_average) already gives probabilities: softmax twice — use "
        "`type: nll` on probabilities, or `combine: logit_average`"),
    "warn_sim_bce_raw_cosine": (
        "warn_sim_bce_raw_cosine.yaml:16:13: warning[W-SIM-BCE]: heads.match.metric: a raw cosine score lies in "
        "[-1.0, 1.0]: used as the logit of binary cross-entropy, the predicted probability can never exceed "
        "0.73 — set `temperature` (e.g. 0.05) or `learn_scale: true`"),
    "schema_type_classes_union": (
        "schema_type_classes_union.yaml:13:14: error[E-SCHEMA-TYPE]: heads.sentiment.classes: expected a whole "
        "number or a list, got 'three' — write e.g. `3` or `[a, b]`"),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_rendered_message_is_pinned(name):
    path = INVALID / f"{name}.yaml"
    rendered = [dataclasses.replace(d, file=path.name).render() for d in check_file(path).diagnostics]
    assert rendered == [PINNED[name]]


def test_missing_file_renders_without_a_position(tmp_path):
    (d,) = check_file(tmp_path / "gone.yaml").diagnostics
    assert d.render() == (f"{tmp_path / 'gone.yaml'}: error[E-FILE]: cannot read spec file "
                          f"'{tmp_path / 'gone.yaml'}': no such file or directory — check the path "
                          "(relative paths start from the current directory)")


NEAR_MISSES = ["ref_typo", "ref_early_stopping_head", "schema_unknown_key_typo", "schema_unknown_key_loss",
               "schema_unknown_section", "unknown_type_encoder", "unknown_type_loss", "metric_unknown_typo",
               "schema_value_literal_typo", "warn_backbone_unknown", "schema_unknown_key_near_required",
               "schema_unknown_section_near_required", "metric_early_stopping_typo"]


@pytest.mark.parametrize("name", NEAR_MISSES)
def test_near_miss_names_get_did_you_mean(name):
    (d,) = check_file(INVALID / f"{name}.yaml").diagnostics
    assert "did you mean '" in d.hint


# ---------------------------------------------------------------------------- coverage of codes


def codes_in_source() -> set[str]:
    codes = set()
    for py in (ROOT / "src" / "archspec").rglob("*.py"):
        codes |= set(CODE_IN_SOURCE.findall(py.read_text(encoding="utf-8")))
    # sweep.py's codes are about sweep files, not specs: pinned in tests/test_sweep.py
    sweep = ROOT / "src" / "archspec" / "sweep.py"
    return codes - set(CODE_IN_SOURCE.findall(sweep.read_text(encoding="utf-8")))


def test_every_code_in_the_source_has_a_corpus_case():
    covered = {code for p in CORPUS for _, code, *_ in expectations(p)}
    covered |= {code for _, expected in GENERATED.values() for _, code, *_ in expected}
    from test_datacheck import CODES_COVERED  # `validate --data` codes need data files: tested there

    covered |= CODES_COVERED
    # codes of files that are not specs (sweep files): asserted in their own tests
    elsewhere = {"E-SWEEP": "test_sweep.py", "E-SWEEP-TRIAL": "test_sweep.py", "W-SWEEP-SPACE": "test_sweep.py"}
    for code, test_file in elsewhere.items():
        assert code in (ROOT / "tests" / test_file).read_text(encoding="utf-8"), (code, test_file)
    covered |= set(elsewhere)
    source = codes_in_source()
    assert len(source) >= 40, "the scan for codes in the source found too few; did the quoting change?"
    missing = sorted(source - covered)
    assert not missing, f"codes with no invalid-spec case in tests/invalid/: {missing}"


def test_corpus_files_have_one_header_and_a_description():
    for p in CORPUS:
        lines = p.read_text(encoding="utf-8").splitlines()
        n = sum(1 for line in lines if line.startswith("# expect:"))
        assert lines[:n] == [line for line in lines if line.startswith("# expect:")], p.name
        assert lines[n].startswith("# ") and not lines[n].startswith("# expect"), f"{p.name}: say what the mistake is"
