"""`validate --data`: data headers checked against the spec without torch, located at the spec field."""

from __future__ import annotations

import pandas as pd
import pytest

from archspec.cli import main

SPEC = """archspec: 1
name: m
inputs:
  title: {type: text, column: title}
  stats: {type: numeric, columns: [a, b]}
  photo: {type: image, column: photo, size: [8, 8]}
  emb: {type: vector, column: emb, width: 2}
encoders:
  t: {type: embedding_bag, input: title, dim: 4}
  c: {type: cnn, input: photo, channels: [4]}
fusions:
  f: {type: early, inputs: [t, stats, c, emb]}
heads:
  label: {type: multiclass, from: f, classes: [x, y]}
  price: {type: regression, from: f, target: price_eur}
training:
  data: {train: train.csv, test: test.parquet}
"""
#: codes exercised here (tests/test_invalid_corpus.py counts them as covered)
CODES_COVERED = {"E-DATA-FILE", "E-DATA-COLUMN", "E-DATA-TYPE", "E-DATA-IMAGE", "N-DATA-MISSING"}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(SPEC)
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "1.png").write_bytes(b"png")
    return tmp_path


def test_good_data_passes(project, capsys):
    pd.DataFrame({"title": ["a", "b"], "a": [1, 2], "b": [0.5, None], "photo": ["img/1.png", "img/1.png"],
                  "emb_0": [1, 2], "emb_1": [3, 4], "label": ["x", "y"], "price_eur": [1.0, 2.0]}
                 ).to_csv(project / "train.csv", index=False)
    pd.DataFrame({"title": ["a"], "a": [1], "b": [2], "photo": ["img/1.png"], "emb": [[0.1, 0.2]],
                  "label": ["x"], "price_eur": [3.0]}).to_parquet(project / "test.parquet")
    code, out, err = run(capsys, "validate", "--data", "spec.yaml")
    assert code == 0 and out == "spec.yaml: ok — 9 nodes, 2 predictions\n"


def test_every_problem_is_located_at_the_field_that_names_the_column(project, capsys):
    pd.DataFrame({"titel": ["a"], "a": [1], "b": ["twelve"], "photo": ["img/missing.png"], "label": ["x"],
                  "price": [1.0]}).to_csv(project / "train.csv", index=False)
    code, out, err = run(capsys, "validate", "spec.yaml", "--data")
    assert code == 1
    assert out.splitlines() == [
        "spec.yaml:4:31: error[E-DATA-COLUMN]: inputs.title.column: train.csv has no column 'title' — did you "
        "mean 'titel'?",
        "spec.yaml:5:39: error[E-DATA-TYPE]: inputs.stats.columns[1]: train.csv row 1: column 'b' holds 'twelve', "
        "not a number — fix the data, or read the column as `categorical` / `text`",
        "spec.yaml:6:32: error[E-DATA-IMAGE]: inputs.photo.column: train.csv row 1: image 'img/missing.png' in "
        f"column 'photo' does not exist (looked in {project / 'img'}) — image paths are relative to the data file",
        "spec.yaml:7:31: error[E-DATA-COLUMN]: inputs.emb.column: train.csv has no column 'emb' (nor emb_0 … "
        "emb_1) — columns: titel, a, b, photo, label, price",
        "spec.yaml:15:46: error[E-DATA-COLUMN]: heads.price.target: train.csv has no label column 'price_eur' — "
        "did you mean 'price'?",
        "spec.yaml:17:34: note[N-DATA-MISSING]: training.data.test: data file test.parquet not found: not checked "
        "— prepare the data (e.g. `archspec data prepare`) or fix the path, relative to the spec file",
    ]


def test_data_file_given_on_the_command_line(project, capsys):
    (project / "other.jsonl").write_text('{"title": "a", "a": 1, "b": 2, "emb": [1, 2], "label": "x"}\n')
    code, out, _ = run(capsys, "validate", "--data", "other.jsonl", "spec.yaml")
    assert code == 1
    assert [ln.split(": ")[1] for ln in out.splitlines()] == ["error[E-DATA-COLUMN]", "error[E-DATA-COLUMN]"]
    assert "no column 'photo'" in out and "no label column 'price_eur'" in out
    code, out, _ = run(capsys, "validate", "spec.yaml", "--data", "nope.csv")
    assert code == 1 and "error[E-DATA-FILE]: data file nope.csv not found" in out
    (project / "bad.parquet").write_text("not parquet")
    code, out, _ = run(capsys, "validate", "spec.yaml", "--data", "bad.parquet")
    assert code == 1 and "error[E-DATA-FILE]: cannot read bad.parquet" in out


def test_data_checks_are_off_by_default(project, capsys):
    code, out, _ = run(capsys, "validate", "spec.yaml")
    assert code == 0 and "DATA" not in out
