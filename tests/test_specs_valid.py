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


def test_shipped_and_parity_specs_pass_the_committed_json_schema():
    """What editors check (through the $schema comment) agrees with the checker."""
    import jsonschema

    from archspec.load import load_file

    schema = json.loads((ROOT / "specs" / "archspec.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in SPECS + sorted((ROOT / "tests" / "parity_specs").glob("*.yaml")):
        data, _ = load_file(path)
        assert [e.message for e in validator.iter_errors(data)] == [], path


def test_late_fusion_metrics_default_to_first_member():
    from archspec.pipeline import check_text

    text = (ROOT / "specs" / "late_fusion.yaml").read_text().replace("    metrics: [accuracy, f1_macro]\n", "")
    text += "  early_stopping: {metric: reception/accuracy}\n"
    r = check_text(text, "late.yaml", base_dir=ROOT / "specs")
    assert r.errors == []
