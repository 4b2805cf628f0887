"""Every data fault is found before training and named as file:row:column: what — what to do."""

import json

import numpy as np
import pandas as pd
import pytest

from archspec.data import Preprocessor, find_problems, preflight, read_table, split
from archspec.errors import DataError

from data_kit import kitchen, save_csv, write_spec


def problems_of(checked, path, df, split="train", **kw):
    with pytest.raises(DataError) as exc:
        preflight(checked, df, path, split, **kw)
    assert exc.value.exit_code == 3
    return str(exc.value), exc.value.problems


def test_good_data_passes_every_split(tmp_path):
    checked, frame = kitchen(tmp_path)
    path, df = save_csv(frame, tmp_path)
    for s in ("train", "validation", "test", "predict"):
        preflight(checked, df, path, s)
    assert find_problems(checked, df, path) == []


def test_missing_columns_are_listed_with_close_names(tmp_path):
    checked, frame = kitchen(tmp_path)
    path, df = save_csv(frame.rename(columns={"color": "colour", "label": "labels"}).drop(columns=["flag"]), tmp_path)
    text, probs = problems_of(checked, path, df)
    assert f"{path}:color: column 'color' is missing (read by inputs.cat) — did you mean 'colour'?" in text
    # one line per column, naming every prediction that reads it
    assert f"{path}:label: column 'label' is missing (read by heads.sentiment, heads.sentiment2, fusions.fused)" in text
    assert "did you mean 'labels'?" in text
    assert f"{path}:flag: column 'flag' is missing (read by heads.flag) — the file has: " in text
    assert "set `target:` on heads.flag" in text
    assert sorted(p.column for p in probs if p.code == "missing-column") == ["color", "flag", "label"]


def test_targets_not_needed_for_predict(tmp_path):
    checked, frame = kitchen(tmp_path)
    path, df = save_csv(frame.drop(columns=["label", "flag", "tags", "codes", "level", "score", "y1", "match"]),
                        tmp_path)
    preflight(checked, df, path, "predict")
    with pytest.raises(DataError, match="column 'flag' is missing"):
        preflight(checked, df, path, "test")


def test_label_outside_declared_classes(tmp_path):
    checked, frame = kitchen(tmp_path)
    frame.loc[3, "label"] = "maybe"
    path, df = save_csv(frame, tmp_path)
    text, probs = problems_of(checked, path, df)
    # row 3 of the data is line 5 of the CSV (header on line 1); reported once although three
    # predictions read the column
    assert (f"{path}:5:label: class 'maybe' is not one of the classes declared in heads.sentiment.classes "
            "(neg, neu, pos) — fix the label, or add it to heads.sentiment.classes") in text
    assert len([p for p in probs if p.code == "label"]) == 1


def test_missing_label(tmp_path):
    checked, frame = kitchen(tmp_path)
    frame.loc[0, "level"] = None
    path, df = save_csv(frame, tmp_path)
    text, _ = problems_of(checked, path, df)
    assert f"{path}:2:level: missing label — fill in the label or drop the row" in text


def test_too_many_distinct_labels_for_a_class_count(tmp_path):
    checked, frame = kitchen(tmp_path)
    frame["level"] = ["a", "b", "c", "d"] * 2
    path, df = save_csv(frame, tmp_path)
    text, _ = problems_of(checked, path, df)
    assert (f"{path}:level: 4 distinct classes in the training data but heads.level.classes declares 3: a, b, c, d"
            in text)


@pytest.mark.parametrize("value,expect", [
    (float("nan"), "missing inputs.num value (empty or NaN) — fill it in or drop the row"),
    (float("inf"), "inputs.num value is inf (not finite) — replace it"),
    ("abc", "inputs.num value 'abc' is not a number — fix the value or drop the row"),
])
def test_non_finite_numeric(tmp_path, value, expect):
    checked, frame = kitchen(tmp_path)
    frame["b"] = frame["b"].astype(object)
    frame.loc[2, "b"] = value
    path, df = save_csv(frame, tmp_path)
    text, _ = problems_of(checked, path, df)
    assert f"{path}:4:b: {expect}" in text


@pytest.mark.parametrize("value,expect", [
    ("[1.0, NaN, 2.0]", "vector holds nan at position 1 — replace non-finite values"),
    ("[1.0, 2.0]", "vector has 2 values, expected 3 — every row needs exactly 3 values (inputs.vec has width 3)"),
    ("1 2 3", "vector '1 2 3' is not a list of numbers — write a JSON list of 3 numbers"),
    ("[1, \"x\", 2]", "vector '[1, \"x\", 2]' is not a list of numbers"),
    ("", "missing vector — give a list of 3 numbers for inputs.vec"),
])
def test_bad_vectors(tmp_path, value, expect):
    checked, frame = kitchen(tmp_path)
    frame.loc[1, "emb"] = value
    path, df = save_csv(frame, tmp_path)
    text, _ = problems_of(checked, path, df)
    assert f"{path}:3:emb: {expect}" in text


def test_vector_from_prefixed_columns(tmp_path):
    checked, frame = kitchen(tmp_path)
    vecs = frame.pop("emb").map(json.loads).tolist()
    for j in range(3):
        frame[f"emb_{j}"] = [v[j] for v in vecs]
    frame.loc[4, "emb_2"] = float("nan")
    path, df = save_csv(frame, tmp_path)
    text, _ = problems_of(checked, path, df)
    assert f"{path}:6:emb_2: missing vector (empty or NaN)" in text
    path, df = save_csv(frame.drop(columns=["emb_1"]), tmp_path)
    text, _ = problems_of(checked, path, df)
    assert "column 'emb' is missing (read by inputs.vec); of emb_0…emb_2, 1 are missing (emb_1)" in text


def test_images_missing_unreadable_truncated(tmp_path):
    checked, frame = kitchen(tmp_path)
    good = (tmp_path / frame.loc[0, "image_path"]).read_bytes()
    (tmp_path / "images" / "garbage.png").write_bytes(b"this is not a png")
    (tmp_path / "images" / "half.png").write_bytes(good[: len(good) // 2])
    frame.loc[1, "image_path"] = "images/garbage.png"
    frame.loc[2, "image_path"] = "images/half.png"
    frame.loc[3, "image_path"] = "images/gone.png"
    frame.loc[4, "gray_path"] = None
    path, df = save_csv(frame, tmp_path)
    text, probs = problems_of(checked, path, df)
    img = tmp_path / "images"
    assert f"{path}:3:image_path: unreadable or truncated image (" in text and f"{img / 'garbage.png'}" in text
    assert f"{path}:4:image_path: unreadable or truncated image (" in text and f"{img / 'half.png'}" in text
    assert f"{path}:5:image_path: image not found: {img / 'gone.png'} — paths are relative to the data file's" in text
    assert f"{path}:6:gray_path: missing image path — give the image file for inputs.gray" in text
    assert [p.row for p in probs if p.code == "image"] == [1, 2, 3, 4]


def test_multilabel_unknown_label_and_bad_binary(tmp_path):
    checked, frame = kitchen(tmp_path)
    frame.loc[2, "tags"] = "x|w"
    frame["flag"] = frame["flag"].astype(object)
    frame.loc[5, "flag"] = "maybe"
    path, df = save_csv(frame, tmp_path)
    text, _ = problems_of(checked, path, df)
    assert (f"{path}:4:tags: label 'w' is not one of the labels declared in heads.tags.labels (x, y, z) — "
            "fix the label, or add it to heads.tags.labels") in text
    assert f"{path}:7:flag: binary label 'maybe' is not 0/1, true/false or yes/no" in text


def test_regression_target_problems(tmp_path):
    checked, frame = kitchen(tmp_path)
    frame["y1"] = frame["y1"].astype(object)
    frame.loc[0, "y1"] = "abc"
    frame.loc[1, "score"] = "[1.0]"
    path, df = save_csv(frame, tmp_path)
    text, _ = problems_of(checked, path, df)
    assert f"{path}:2:y1: target 'abc' is not a number" in text
    assert f"{path}:3:score: target has 1 values, expected 2" in text


@pytest.mark.parametrize("n,split_,expect", [
    (1, "train", "only 1 row: training needs at least 2"),
    (0, "validation", "the data has no rows"),
])
def test_too_small(tmp_path, n, split_, expect):
    checked, frame = kitchen(tmp_path)
    path = tmp_path / "small.csv"
    text, probs = problems_of(checked, path, frame.head(n), split_)
    assert f"{path}: {expect}" in text
    assert probs[0].code == "too-few-rows"


def test_a_validation_split_must_leave_rows_on_both_sides(tmp_path):
    checked, frame = kitchen(tmp_path)
    with pytest.raises(DataError, match=r"^t\.csv: only 2 rows: holding out validation_split 0\.25 leaves 1 for "
                                        r"training and 1 for validation — add rows"):
        split(frame.head(2), 0.25, 0, file="t.csv")
    assert [len(p) for p in split(frame.head(3), 0.25, 0)] == [2, 1]


def test_targets_flag_and_evaluate_split(tmp_path):
    checked, frame = kitchen(tmp_path)
    path, df = save_csv(frame.drop(columns=["flag"]), tmp_path)
    preflight(checked, df, path, "test", targets=False)
    with pytest.raises(DataError, match="column 'flag' is missing"):
        preflight(checked, df, path, "evaluate")


def test_every_problem_is_reported_at_once_and_the_list_is_capped(tmp_path):
    checked, frame = kitchen(tmp_path, n_rows=40)
    frame["a"] = float("nan")  # 40 problems in one column
    frame.loc[7, "label"] = "maybe"
    frame.loc[9, "flag"] = 7
    path, df = save_csv(frame, tmp_path)
    text, probs = problems_of(checked, path, df)
    assert len(probs) == 42
    assert text.splitlines()[0] == f"{path} (train data): 42 data problems found; fix the data and rerun"
    assert text.count(":a: missing inputs.num value") == 5
    assert f"{path}:a: … and 35 more rows like this (missing-value)" in text
    assert f"{path}:9:label: class 'maybe'" in text and f"{path}:11:flag: binary label 7" in text


def test_jsonl_rows_are_numbered_from_one(tmp_path):
    checked, frame = kitchen(tmp_path)
    frame.loc[0, "label"] = "maybe"
    path = tmp_path / "d.jsonl"
    frame.to_json(path, orient="records", lines=True)
    text, _ = problems_of(checked, path, read_table(path))
    assert f"{path}:1:label: class 'maybe'" in text


def test_validation_labels_checked_against_labels_fitted_on_train(tmp_path):
    spec = (tmp_path / "x").mkdir() or (
        "archspec: 1\nname: m\ninputs: {x: {type: numeric, columns: [a]}}\n"
        "heads: {y: {type: multiclass, from: x, classes: 3}}\n")
    checked = write_spec(tmp_path, spec)
    df = pd.DataFrame({"a": [1.0] * 8, "y": ["cat", "dog"] * 3 + ["eel", "fox"]})
    path, df = save_csv(df, tmp_path)
    train, val = df.iloc[:6], df.iloc[6:]
    pre = Preprocessor.fit(checked, train, tmp_path, file=path)
    assert pre.label_names("y") == ["cat", "dog", "<unused:2>"]
    text, probs = problems_of(checked, path, val, "validation", preprocessor=pre)
    assert (f"{path}:8:y: class 'eel' did not occur in the training data (classes learned there: cat, dog) — "
            "declare the classes by name in heads.y.classes, or add training rows with 'eel'") in text
    assert len(probs) == 2
    # and the transform refuses them the same way
    with pytest.raises(DataError, match=r":9:y: class 'fox' did not occur in the training data"):
        pre.transform(val, tmp_path, file=path)


def test_split_rows_keep_their_file_numbers(tmp_path):
    checked, frame = kitchen(tmp_path, n_rows=12)
    frame.loc[10, "a"] = float("inf")
    path, df = save_csv(frame, tmp_path)
    tr, va = split(df, 0.25, 0)
    part = tr if 10 in tr.index else va
    text, _ = problems_of(checked, path, part, "validation")
    assert f"{path}:12:a:" in text


def _cells():
    from hypothesis import strategies as st

    scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                       st.text(max_size=12), st.sampled_from(["[1, 2, 3]", "[a, b]", "[1 2", "[]", "NaN", "yes", "[[1]]"]))
    return st.one_of(scalar, st.lists(st.one_of(st.floats(), st.text(max_size=4), st.integers(-5, 5)), max_size=4))


def test_converters_never_crash_on_junk():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from archspec.data import convert

    @settings(max_examples=150, deadline=None)
    @given(st.lists(_cells(), min_size=1, max_size=6))
    def check(values):
        series = pd.Series(values, dtype=object)
        df = pd.DataFrame({"c": series})
        for arr, probs in (convert.numbers(series, "c"), convert.vectors(df, ["c"], 3, "inputs.v"),
                           convert.binary(series, "c")):
            assert len(arr) == len(values)
            assert all(p.column == "c" and p.row in range(len(values)) for p in probs)
            bad = {p.row for p in probs}
            assert all(np.isfinite(arr[i]).all() for i in range(len(values)) if i not in bad)
        keys, _ = convert.class_keys(series, "c")
        sets, _ = convert.label_sets(series, "c")
        assert len(keys) == len(sets) == len(values)
        convert.fit_names([k for k in keys if k is not None], 3, None, "classes", "heads.h.classes", "c")

    check()
