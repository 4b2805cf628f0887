"""Property-based: `archspec diff` and the static counts answer any mutant of a shipped spec with a
diff, a count or diagnostics — never a crash; any re-serialisation of a spec is no change."""

from __future__ import annotations

import io
import json
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archspec.cli import main
from archspec.params import count_params
from archspec.pipeline import check_text

from test_properties import DATA, TEXTS, dump, mutated_spec

SOME = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _diff(old: str, new: str, fmt: str = "json") -> tuple[int, str, str]:
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "old.yaml").write_text(old, encoding="utf-8")
        (Path(d) / "new.yaml").write_text(new, encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["diff", str(Path(d) / "old.yaml"), str(Path(d) / "new.yaml"), "--format", fmt])
    return code, out.getvalue(), err.getvalue()


@SOME
@given(st.sampled_from(sorted(TEXTS)), mutated_spec(), st.sampled_from(["json", "text", "markdown"]))
def test_diff_against_a_mutant_never_crashes(name, mutant, fmt):
    code, out, err = _diff(TEXTS[name], mutant, fmt)
    assert code in (0, 1, 2)
    assert "Traceback" not in out + err
    if fmt == "json":
        data = json.loads(out)
        assert data.get("valid", True) is (code != 2)
        if code != 2:
            assert data["changed"] is (code == 1)
    checked = check_text(mutant, "mutant.yaml")
    count_params(checked)  # a partial or broken graph still gets counts (or "deferred"), not an exception


@SOME
@given(st.sampled_from(sorted(TEXTS)), st.integers(0, 2))
def test_reserialised_spec_is_no_change(name, style):
    code, out, err = _diff(TEXTS[name], dump(DATA[name], style))
    assert code == 0, out + err
    assert json.loads(out)["changed"] is False
