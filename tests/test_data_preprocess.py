"""The fitted transform: tensors of the contracted dtypes and shapes, fitted on train only, saved as JSON."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from archspec.data import Preprocessor, read_table, split
from archspec.data.images import IMAGENET_MEAN, IMAGENET_STD
from archspec.errors import BuildError, CheckpointError, DataError

from data_kit import KITCHEN, kitchen, save_csv, write_spec

NUMERIC = ("archspec: 1\nname: m\ninputs:\n  x: {type: numeric, columns: [a, b]}\n"
           "  c: {type: categorical, column: color, max_categories: 2}\n"
           "  t: {type: text, column: text, max_length: 6, tokenizer: {type: wordpiece, min_frequency: 1}}\n"
           "heads: {y: {type: multiclass, from: x, classes: 2}}\n")


def test_every_kind_has_the_contracted_dtype_and_shape(tmp_path):
    checked, frame = kitchen(tmp_path, n_rows=8)
    path, df = save_csv(frame, tmp_path)
    pre = Preprocessor.fit(checked, df, tmp_path, file=path)
    inputs, targets = pre.transform(df, tmp_path, file=path)
    got = {k: (tuple(v.shape), v.dtype) for k, v in {**inputs, **targets}.items()}
    i64, f32 = torch.int64, torch.float32
    assert got == {
        "txt": ((8, 8), i64), "txt.mask": ((8, 8), i64),
        "img": ((8, 3, 4, 6), f32), "gray": ((8, 1, 5, 5), f32),
        "num": ((8, 2), f32), "mm": ((8, 1), f32), "cat": ((8,), i64), "vec": ((8, 3), f32),
        "sentiment": ((8,), i64), "sentiment2": ((8,), i64), "fused": ((8,), i64), "level": ((8,), i64),
        "tags": ((8, 3), f32), "codes": ((8, 4), f32), "flag": ((8,), f32),
        "score": ((8, 2), f32), "y1": ((8, 1), f32), "match": ((8,), f32),
    }
    # every shape agrees with what the checker inferred for the inputs
    for name in checked.spec.inputs:
        assert list(inputs[name].shape[1:]) == list(checked.shapes[name].dims)
    # the late fusion is scored against its first member's labels, with the same classes
    assert torch.equal(targets["fused"], targets["sentiment"])
    assert pre.label_names("fused") == pre.label_names("sentiment") == ["neg", "neu", "pos"]
    assert pre.label_names("level") == ["0", "1", "2"] and pre.label_names("flag") is None
    assert pre.prediction_names == checked.graph.predictions()  # graph order: late fusions after their members


def test_fit_sees_only_the_training_rows(tmp_path):
    checked = write_spec(tmp_path, NUMERIC)
    df = pd.DataFrame({"a": [1.0, 2, 3, 4, 1000], "b": [5.0] * 5, "color": ["red", "red", "blue", "blue", "green"],
                       "text": ["apple pie", "apple tart", "pie tart", "apple", "zzz qqq"], "y": [0, 1, 0, 1, 1]})
    train, val = df.iloc[:4], df.iloc[4:]
    pre = Preprocessor.fit(checked, train, tmp_path)
    state = pre.state_dict()["inputs"]
    assert state["x"]["shift"] == [2.5, 5.0]  # the 1000 in the validation row is not in the mean
    assert state["x"]["scale"] == [pytest.approx(np.std([1, 2, 3, 4])), 1.0]  # constant column: scale 1
    assert pre.vocabulary("c") == ["blue", "red"]  # 'green' only occurs in validation
    inputs, _ = pre.transform(val, tmp_path)
    assert inputs["c"].tolist() == [0]  # unseen category → 0
    assert inputs["x"][0, 1].item() == 0.0
    tok = pre._extras["t"].tokenizer
    assert tok.token_to_id("z") is None and tok.token_to_id("apple") is not None
    assert inputs["t"][0, 1].item() == 1  # [UNK]: 'zzz' is built from characters never seen in training
    tr_inputs, _ = pre.transform(train, tmp_path)
    assert tr_inputs["x"][:, 0].mean().abs().item() < 1e-6


def test_text_ids_masks_padding_and_truncation(tmp_path):
    checked = write_spec(tmp_path, NUMERIC)
    df = pd.DataFrame({"a": [1.0, 2], "b": [1.0, 2], "color": ["r", "g"], "y": [0, 1],
                       "text": ["one two three four five six seven", None]})
    pre = Preprocessor.fit(checked, df, tmp_path)
    inputs, _ = pre.transform(df, tmp_path)
    ids, mask = inputs["t"], inputs["t.mask"]
    cls_id, sep_id = pre._extras["t"].tokenizer.token_to_id("[CLS]"), pre._extras["t"].tokenizer.token_to_id("[SEP]")
    assert ids.shape == (2, 6) and ids[0, 0] == cls_id and ids[0, -1] == sep_id  # truncated, specials kept
    assert mask[0].tolist() == [1] * 6
    assert ids[1].tolist() == [cls_id, sep_id, 0, 0, 0, 0] and mask[1].tolist() == [1, 1, 0, 0, 0, 0]
    assert pre.pad_token_id("t") == 0
    assert pre.vocab_size("t") == pre._extras["t"].tokenizer.get_vocab_size()
    assert int(ids.max()) < pre.vocab_size("t")
    vocab = pre._extras["t"].tokenizer.get_vocab()
    assert [vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 1, 2, 3, 4]
    with pytest.raises(BuildError, match="'x' is not a text input — text inputs: t"):
        pre.vocab_size("x")
    with pytest.raises(KeyError):  # lookups can fall back on `except KeyError`
        pre.vocab_size("x")
    assert pre.vocab_size("c") == 3  # categorical: the spec's cardinality, max_categories + 1


def test_image_resizing_and_normalisation(tmp_path):
    spec = ("archspec: 1\nname: m\ninputs:\n  x: {type: numeric, columns: [a]}\n"
            "  im: {type: image, column: p, size: [3, 5]}\n"
            "  u: {type: image, column: p, size: [2, 2], channels: 1, normalize: unit}\n"
            "  r: {type: image, column: p, size: [2, 2], normalize: none}\n"
            "heads: {y: {type: regression, from: x}}\n")
    checked = write_spec(tmp_path, spec)
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (17, 9), (255, 0, 51)).save(tmp_path / "sub" / "red.png")
    df = pd.DataFrame({"a": [0.0, 1.0], "y": [0.0, 1.0], "p": ["sub/red.png", str(tmp_path / "sub" / "red.png")]})
    pre = Preprocessor.fit(checked, df, tmp_path)
    inputs, _ = pre.transform(df, tmp_path)
    im = inputs["im"]
    assert im.shape == (2, 3, 3, 5)
    expect = [(v - m) / s for v, m, s in zip((1.0, 0.0, 0.2), IMAGENET_MEAN, IMAGENET_STD)]
    assert torch.allclose(im[0].mean(dim=(1, 2)), torch.tensor(expect), atol=1e-5)
    assert torch.equal(im[0], im[1])  # relative to the data directory or absolute
    gray = 0.299 + 0.2 * 0.114  # PIL's ITU-R 601-2 luma of (255, 0, 51), in [0, 1]
    assert inputs["u"].shape == (2, 1, 2, 2) and abs(inputs["u"][0, 0, 0, 0].item() - gray) < 0.01
    assert inputs["r"][0, :, 0, 0].tolist() == [255.0, 0.0, 51.0]


def test_numeric_minmax_and_none(tmp_path):
    spec = ("archspec: 1\nname: m\ninputs:\n  x: {type: numeric, columns: [a, b], normalize: minmax}\n"
            "  n: {type: numeric, columns: [a], normalize: none}\n"
            "heads: {y: {type: regression, from: x}}\n")
    checked = write_spec(tmp_path, spec)
    df = pd.DataFrame({"a": [2.0, 4.0, 6.0], "b": [True, False, True], "y": [0.0, 1.0, 2.0]})
    pre = Preprocessor.fit(checked, df, tmp_path)
    inputs, _ = pre.transform(df, tmp_path)
    assert inputs["x"].tolist() == [[0.0, 1.0], [0.5, 0.0], [1.0, 1.0]]
    assert inputs["n"].tolist() == [[2.0], [4.0], [6.0]]


def test_categorical_vocabulary(tmp_path):
    spec = ("archspec: 1\nname: m\ninputs:\n  x: {type: numeric, columns: [a]}\n"
            "  c: {type: categorical, column: k, max_categories: 2}\n"
            "  d: {type: categorical, column: k, categories: [b, a]}\n"
            "heads: {y: {type: regression, from: x}}\n")
    checked = write_spec(tmp_path, spec)
    df = pd.DataFrame({"a": [0.0] * 6, "y": [0.0] * 6, "k": ["a", "b", "b", "c", "c", None]})
    pre = Preprocessor.fit(checked, df, tmp_path)
    assert pre.vocabulary("c") == ["b", "c"]  # most frequent first, ties alphabetical, capped
    inputs, _ = pre.transform(df, tmp_path)
    assert inputs["c"].tolist() == [0, 1, 1, 2, 2, 0]
    assert inputs["d"].tolist() == [2, 1, 1, 0, 0, 0]
    assert inputs["c"].max() < checked.spec.inputs["c"].cardinality


def test_vectors_from_json_lists_parquet_lists_and_columns(tmp_path):
    spec = ("archspec: 1\nname: m\ninputs: {v: {type: vector, column: e, width: 2}}\n"
            "heads: {y: {type: regression, from: v, outputs: 2}}\n")
    checked = write_spec(tmp_path, spec)
    lists = pd.DataFrame({"e": [[1.0, 2.0], [3.0, 4.0]], "y": [[0.5, 1.5], [2.5, 3.5]]})
    pq = tmp_path / "d.parquet"
    lists.to_parquet(pq)
    csv_path, csv_df = save_csv(lists.assign(e=lists.e.map(json.dumps), y=lists.y.map(json.dumps)), tmp_path)
    cols = pd.DataFrame({"e_0": [1.0, 3.0], "e_1": [2.0, 4.0], "y_0": [0.5, 2.5], "y_1": [1.5, 3.5]})
    outs = []
    for df in (read_table(pq), csv_df, cols):
        pre = Preprocessor.fit(checked, df, tmp_path)
        outs.append(pre.transform(df, tmp_path))
    for inputs, targets in outs:
        assert inputs["v"].tolist() == [[1.0, 2.0], [3.0, 4.0]]
        assert targets["y"].tolist() == [[0.5, 1.5], [2.5, 3.5]]


def test_label_maps(tmp_path):
    spec = ("archspec: 1\nname: m\ninputs: {x: {type: numeric, columns: [a]}}\nheads:\n"
            "  ints: {type: multiclass, from: x, classes: 3}\n"
            "  words: {type: multiclass, from: x, classes: 4}\n"
            "  shifted: {type: multiclass, from: x, classes: 3}\n"
            "  tags: {type: multilabel, from: x, labels: [p, q, r]}\n"
            "  fitted_tags: {type: multilabel, from: x, labels: 2}\n"
            "  yes: {type: binary, from: x}\n")
    checked = write_spec(tmp_path, spec)
    df = pd.DataFrame({
        "a": [0.0] * 5,
        "ints": [2, 0, 1, 0, 2],
        "words": ["pear", "apple", "fig", "apple", "pear"],
        "shifted": [1, 3, 2, 3, 1],
        "tags": ['["p", "r"]', "q|r", "p,q;r", "", None],
        "fitted_tags": ["b", "a|b", "", "a", "b"],
        "yes": ["yes", "No", "TRUE", 0, 1.0],
    })
    path, df = save_csv(df, tmp_path)
    pre = Preprocessor.fit(checked, df, tmp_path)
    assert pre.label_names("ints") == ["0", "1", "2"]
    assert pre.label_names("words") == ["apple", "fig", "pear", "<unused:3>"]
    assert pre.label_names("shifted") == ["1", "2", "3"]
    with pytest.raises(DataError, match="4 distinct classes in the training data but heads.shifted.classes declares 3"):
        Preprocessor.fit(checked, df.assign(shifted=[1, 3, 2, 4, 1]), tmp_path)
    assert pre.label_names("fitted_tags") == ["a", "b"]
    _, t = pre.transform(df, tmp_path)
    assert t["ints"].tolist() == [2, 0, 1, 0, 2]
    assert t["words"].tolist() == [2, 0, 1, 0, 2]
    assert t["shifted"].tolist() == [0, 2, 1, 2, 0]  # 1-based labels map to 0..2 in sorted order
    assert t["tags"].tolist() == [[1, 0, 1], [0, 1, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0]]
    assert t["fitted_tags"].tolist() == [[0, 1], [1, 1], [0, 0], [1, 0], [0, 1]]
    assert t["yes"].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]
    with pytest.raises(BuildError, match="no prediction with labels named 'tag' — did you mean 'tags'"):
        pre.label_names("tag")


def test_contrastive_two_tower_has_no_target(tmp_path):
    spec = ("archspec: 1\nname: m\ninputs: {u: {type: numeric, columns: [a]}, i: {type: numeric, columns: [b]}}\n"
            "heads: {r: {type: similarity, query: u, candidate: i, loss: {type: contrastive}}}\n")
    checked = write_spec(tmp_path, spec)
    df = pd.DataFrame({"a": [0.0, 1.0], "b": [1.0, 2.0]})
    pre = Preprocessor.fit(checked, df, tmp_path)
    inputs, targets = pre.transform(df, tmp_path)
    assert targets == {} and set(inputs) == {"u", "i"} and pre.prediction_names == []


def test_predict_needs_no_label_columns(tmp_path):
    checked, frame = kitchen(tmp_path)
    pre = Preprocessor.fit(checked, frame, tmp_path)
    inputs, targets = pre.transform(frame[["text", "image_path", "gray_path", "a", "b", "c", "color", "emb"]],
                                    tmp_path, targets=False)
    assert targets == {} and inputs["num"].shape == (8, 2)


def test_transform_reports_bad_values_with_rows(tmp_path):
    checked, frame = kitchen(tmp_path)
    pre = Preprocessor.fit(checked, frame, tmp_path)
    bad = frame.copy()
    bad.loc[2, "a"] = float("nan")
    with pytest.raises(DataError, match=r"v\.csv:4:a: missing inputs\.num value"):
        pre.transform(bad, tmp_path, file="v.csv")
    with pytest.raises(DataError, match=r"v\.csv:label: column 'label' is missing"):
        pre.transform(frame.drop(columns=["label"]), tmp_path, file="v.csv")


def _all_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_save_load_round_trip_is_identical_and_pickle_free(tmp_path):
    checked, frame = kitchen(tmp_path, n_rows=12)
    path, df = save_csv(frame, tmp_path)
    train, val = split(df, 0.25, 0)
    pre = Preprocessor.fit(checked, train, tmp_path, file=path)
    run = tmp_path / "run" / "preprocessor"
    pre.save(run)
    files = sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file())
    assert files == ["preprocessor.json", "tokenizers/txt/tokenizer.json"]
    for f in files:
        json.loads((run / f).read_text())  # JSON only: nothing that needs unpickling
    again = Preprocessor.load(run, checked)
    for part in (train, val):
        a, b = pre.transform(part, tmp_path), again.transform(part, tmp_path)
        assert _all_equal(a[0], b[0]) and _all_equal(a[1], b[1])
    assert again.label_names("tags") == pre.label_names("tags") and again.vocab_size("txt") == pre.vocab_size("txt")


def test_load_refuses_a_changed_spec_or_a_broken_file(tmp_path):
    checked, frame = kitchen(tmp_path)
    pre = Preprocessor.fit(checked, frame, tmp_path)
    run = tmp_path / "run"
    pre.save(run)
    changed = write_spec(tmp_path, KITCHEN.replace("max_length: 8", "max_length: 9")
                         .replace("classes: 3", "classes: 4"), "changed.yaml")
    with pytest.raises(CheckpointError, match=r"\(inputs\.txt changed; the target of 'level' changed\) — use the spec"):
        Preprocessor.load(run, changed)
    with pytest.raises(CheckpointError, match="has no fitted preprocessor"):
        Preprocessor.load(tmp_path / "nowhere", checked)
    state = json.loads((run / "preprocessor.json").read_text())
    state["inputs"]["num"]["scale"] = [1.0]
    (run / "preprocessor.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=r"inputs\.num\.scale is not 2 finite numbers"):
        Preprocessor.load(run, checked)
    (run / "preprocessor.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable"):
        Preprocessor.load(run, checked)


def test_missing_pretrained_tokenizer_says_how_to_provide_it(tmp_path):
    spec = ("archspec: 1\nname: m\ninputs:\n  x: {type: numeric, columns: [a]}\n"
            "  t: {type: text, column: s, tokenizer: {type: pretrained, name: ./no_such_dir}}\n"
            "heads: {y: {type: regression, from: x}}\n")
    checked = write_spec(tmp_path, spec)
    df = pd.DataFrame({"a": [0.0, 1.0], "y": [0.0, 1.0], "s": ["a", "b"]})
    with pytest.raises(BuildError, match=r"inputs\.t\.tokenizer\.name: no directory .*no_such_dir — save the "
                                         r"tokenizer there"):
        Preprocessor.fit(checked, df, tmp_path)


def test_lists_written_by_pandas_to_csv_are_read(tmp_path):
    # DataFrame.to_csv writes Python lists as "['a', 'b']" and numpy arrays as "[0.5 1.5]": not JSON.
    spec = ("archspec: 1\nname: m\ninputs: {v: {type: vector, column: e, width: 2}}\n"
            "heads: {t: {type: multilabel, from: v, labels: [a, b]}}\n")
    checked = write_spec(tmp_path, spec)
    df = pd.DataFrame({"e": [np.array([0.5, 1.5]), [2.0, 3.0]], "t": [["a", "b"], []]})
    path, df = save_csv(df, tmp_path)
    assert df["e"].tolist() == ["[0.5 1.5]", "[2.0, 3.0]"] and df["t"].tolist() == ["['a', 'b']", "[]"]
    inputs, targets = Preprocessor.fit(checked, df, tmp_path).transform(df, tmp_path)
    assert inputs["v"].tolist() == [[0.5, 1.5], [2.0, 3.0]] and targets["t"].tolist() == [[1, 1], [0, 0]]


def test_whitespace_tokenizer_gives_one_id_per_token_fitted_on_train_only(tmp_path):
    spec = NUMERIC.replace("max_length: 6, tokenizer: {type: wordpiece, min_frequency: 1}",
                           "max_length: 4, tokenizer: {type: whitespace, vocab_size: 5}")
    checked = write_spec(tmp_path, spec)
    df = pd.DataFrame({"a": [1.0, 2, 3, 4], "b": [1.0] * 4, "color": ["r"] * 4, "y": [0, 1, 0, 1],
                       "text": ["318 296", "318 50 296", "318 7", "999 999 999"]})
    train, val = df.iloc[:3], df.iloc[3:]
    pre = Preprocessor.fit(checked, train, tmp_path)
    vocab = pre._extras["t"].tokenizer.get_vocab()
    # [PAD], [UNK], then the most frequent training tokens (ties by text) up to vocab_size; 999 is unseen
    assert vocab == {"[PAD]": 0, "[UNK]": 1, "318": 2, "296": 3, "50": 4}
    assert pre.vocab_size("t") == 5 and pre.pad_token_id("t") == 0
    rows = pd.concat([train, val, df.iloc[:1].assign(text=None), df.iloc[:1].assign(text="296 318 50 50 318")])
    inputs, _ = pre.transform(rows, tmp_path)
    ids, mask = inputs["t"].tolist(), inputs["t.mask"].tolist()
    assert ids == [[2, 3, 0, 0], [2, 4, 3, 0], [2, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0], [3, 2, 4, 4]]
    assert mask[4] == [0, 0, 0, 0] and mask[5] == [1, 1, 1, 1]  # empty: all padding; long: truncated
    run = tmp_path / "run"
    pre.save(run)
    again = Preprocessor.load(run, checked)
    assert torch.equal(again.transform(rows, tmp_path)[0]["t"], pre.transform(rows, tmp_path)[0]["t"])


def test_numbers_and_binary_fast_paths_agree_with_the_per_value_reading():
    """Text cells Arrow parses strictly go one vectorised way; the rest, and every problem, the per-value
    way: both must read the same numbers, and the problems keep their rows."""
    import pandas as pd

    from archspec.data import convert

    text = pd.Series(["1.5", "-2", "1e3", ".5", "+7", "0"], dtype=str)
    assert convert._fast_numbers(text) is not None  # the vectorised path is taken ...
    values, problems = convert.numbers(text, "a")
    assert values.tolist() == pd.to_numeric(text).astype(float).tolist() and not problems
    spaced = pd.Series([" 1.5", "2"], dtype=str)  # ... pandas reads what Arrow will not, per value
    assert convert._fast_numbers(spaced) is None and convert.numbers(spaced, "a")[0].tolist() == [1.5, 2.0]
    bad = pd.Series(["1", "x", "inf"], index=[10, 11, 12], dtype=str)
    assert [(p.row, p.code) for p in convert.numbers(bad, "a")[1]] == [(11, "not-a-number"), (12, "nonfinite")]
    labels = pd.Series(["yes", "0", "True", 1, "no"], dtype=object)
    assert convert.binary(labels, "y")[0].tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]
    wrong = pd.Series(["1", "2", None], index=[5, 6, 7], dtype=object)
    assert [(p.row, p.code) for p in convert.binary(wrong, "y")[1]] == [(6, "binary"), (7, "missing-value")]
