"""Every shipped spec validates with no warnings, and the committed schema matches the models."""

import json

from archspec.pipeline import check_file
from archspec.spec import json_schema

from conftest import ROOT, SPECS


def test_specs_exist():
    assert len(SPECS) >= 6


def test_shipped_spec_valid_without_warnings(spec_path):
    r = check_file(spec_path)
    assert [d.render() for d in r.diagnostics if d.severity != "note"] == []
    assert r.spec is not None


def test_shipped_spec_has_schema_comment(spec_path):
    first = spec_path.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=./archspec.schema.json"


def test_committed_schema_matches_models():
    committed = json.loads((ROOT / "specs" / "archspec.schema.json").read_text())
    assert committed == json_schema(), "run `make schema` to regenerate specs/archspec.schema.json"
