"""`validate --format sarif`: a SARIF 2.1.0 log valid against the official schema, one rule per code."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from archspec.cli import main
from archspec.codes import CODES

from conftest import ROOT, SPECS

SCHEMA = json.loads((ROOT / "tests" / "schemas" / "sarif-schema-2.1.0.json").read_text())
INVALID = sorted((ROOT / "tests" / "invalid").glob("*.yaml"))


def sarif(capsys, *files):
    code = main(["validate", "--format", "sarif", *map(str, files)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, json.loads(out)


def validate(log):
    jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(log)


def test_schema_is_the_official_sarif_2_1_0_schema():
    assert SCHEMA["id"] == "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
    jsonschema.Draft4Validator.check_schema(SCHEMA)


def test_invalid_corpus_gives_a_valid_sarif_log(capsys):
    code, log = sarif(capsys, *INVALID)
    assert code == 1
    validate(log)
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    ids = [r["id"] for r in rules]
    assert len(ids) == len(set(ids)) and set(CODES) <= set(ids)
    assert all(r["help"]["text"] and r["shortDescription"]["text"] for r in rules)
    assert len(run["results"]) > len(INVALID) - 1
    for res in run["results"]:
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
    # every code of the corpus appears as a result
    assert {r["ruleId"] for r in run["results"]} >= {"E-REF", "E-CYCLE", "E-YAML-DUPKEY", "W-UNUSED"}


def test_one_result_exactly(capsys):
    path = ROOT / "tests" / "invalid" / "ref_typo.yaml"
    code, log = sarif(capsys, path)
    validate(log)
    [res] = log["runs"][0]["results"]
    assert res == {
        "ruleId": "E-REF", "ruleIndex": list(CODES).index("E-REF"), "level": "error",
        "message": {"text": "heads.sentiment.from: unknown node 'bga' — did you mean 'bag'?"},
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": path.as_uri()},
                                            "region": {"startLine": 12, "startColumn": 11}},
                       "logicalLocations": [{"fullyQualifiedName": "heads.sentiment.from", "kind": "member"}]}]}


def test_valid_specs_give_an_empty_but_valid_log(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, log = sarif(capsys, *[p.relative_to(ROOT) for p in SPECS])
    assert code == 0
    validate(log)
    assert log["runs"][0]["results"] == []


def test_every_code_the_source_can_report_is_catalogued():
    src = ROOT / "src" / "archspec"
    found = set()
    for path in src.rglob("*.py"):
        found |= set(re.findall(r'"([EWN]-[A-Z][A-Z0-9-]+)"', path.read_text()))
    assert found - set(CODES) == set(), "describe these codes in archspec/codes.py"


@pytest.mark.parametrize("code", sorted(CODES))
def test_review_doc_explains_every_code(code):
    assert f"`{code}`" in (ROOT / "docs" / "review.md").read_text()


def test_review_doc_table_is_the_catalogue():
    rows = [ln for ln in (ROOT / "docs" / "review.md").read_text().splitlines() if re.match(r"^\| `[EWN]-", ln)]
    assert rows == [f"| `{c}` | {t} | {h} |" for c, (t, h) in CODES.items()], \
        "docs/review.md's table is generated from archspec/codes.py: update it"
