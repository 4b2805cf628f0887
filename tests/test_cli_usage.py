"""The command line as a new user meets it (issue 15): every numbered item found when used has a
test here asserting the exit code and the message. One tiny run is trained once for the module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from archspec.cli import main
from archspec.errors import EXIT_CHECKPOINT, EXIT_OK, EXIT_OUTPUT, EXIT_USAGE

SPEC = """\
archspec: 1
name: usage
inputs:
  x: {type: numeric, columns: [a, b, c, d]}
  x2: {type: numeric, columns: [c, d]}
encoders:
  enc: {type: mlp, input: x, layers: [8]}
  enc2: {type: mlp, input: x2, layers: [8]}
fusions:
  both: {type: late, inputs: [a_very_long_head_name_for_alignment, tags_b], metrics: [binary_accuracy, f1_micro]}
heads:
  a_very_long_head_name_for_alignment: {type: multilabel, from: enc, labels: [p, q, r], target: tags, threshold: 0.0}
  tags_b: {type: multilabel, from: enc, labels: [p, q, r], target: tags}
  y: {type: binary, from: enc}
  match: {type: similarity, query: enc, candidate: enc2, temperature: 0.1}
training:
  batch_size: 16
  epochs: 2
  validation_split: 0.25
  seed: 3
"""


def _data(n: int, seed: int = 0) -> pd.DataFrame:
    r = np.random.default_rng(seed)
    df = pd.DataFrame(r.normal(size=(n, 4)), columns=list("abcd"))
    tags = [[t for t, on in zip("pqr", row) if on] for row in (r.random((n, 3)) > 0.5)]
    tags[0] = []  # an empty label set
    df["tags"] = ["|".join(t) for t in tags]
    df["y"] = (df.a > 0).astype(int)
    df["match"] = (df.c > 0).astype(int)
    return df


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("usage")
    (root / "spec.yaml").write_text(SPEC)
    _data(48).to_csv(root / "data.csv", index=False)
    _data(1, seed=1).to_csv(root / "one.csv", index=False)
    assert main(["train", str(root / "spec.yaml"), "--data", str(root / "data.csv"), "--out",
                 str(root / "run"), "--progress", "lines"]) == EXIT_OK
    return root


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- 1. an --out that is one of the inputs is refused before any work ------------------------

def test_predict_refuses_to_overwrite_its_input(run, capsys):
    data = run / "data.csv"
    before = data.read_bytes()
    code, out, err = _cli(capsys, "predict", run / "run", "--data", data, "--out", data)
    assert code == EXIT_USAGE
    assert err.startswith("archspec: error: --out") and "is the data file" in err and "choose another path" in err
    assert out == ""
    assert data.read_bytes() == before  # the input is untouched


@pytest.mark.parametrize("command,target,where", [
    ("predict", "checkpoints/x.csv", "inside the run"), ("predict", "preprocess/p.parquet", "inside the run"),
    ("evaluate", "resolved_spec.json", "is a file of the run"), ("evaluate", "baseline.json", "is a file of the run"),
    ("plot", "checkpoints/c.png", "inside the run")])
def test_outputs_inside_the_run_are_refused(run, capsys, command, target, where):
    before = {p: p.read_bytes() for p in (run / "run").rglob("*") if p.is_file()}
    data = [] if command == "plot" else ["--data", run / "data.csv"]
    code, out, err = _cli(capsys, command, run / "run", *data, "--out", run / "run" / target)
    assert code == EXIT_USAGE and where in err and out == "", err
    assert {p: p.read_bytes() for p in (run / "run").rglob("*") if p.is_file()} == before


def test_train_refuses_an_out_that_is_an_input(run, capsys):
    code, _, err = _cli(capsys, "train", run / "spec.yaml", "--data", run / "data.csv", "--out", run / "data.csv")
    assert code == EXIT_USAGE and "is the data file" in err


# --- 2. an --out that cannot be written: one line, exit 6, before any work --------------------

def test_unwritable_outputs_fail_before_the_work(run, capsys):
    under_file = run / "data.csv" / "m.json"
    code, out, err = _cli(capsys, "evaluate", run / "run", "--data", run / "data.csv", "--out", under_file)
    assert code == EXIT_OUTPUT and out == ""  # no metrics printed first: checked before the work
    assert err.strip().splitlines() == [f"archspec: error: cannot write {under_file}: {run / 'data.csv'} is a "
                                        "file, not a directory"]
    code, out, err = _cli(capsys, "predict", run / "run", "--data", run / "data.csv", "--out",
                          "/proc/archspec-no/preds.csv")
    assert code == EXIT_OUTPUT and "is not writable" in err and "Traceback" not in err
    code, _, err = _cli(capsys, "plot", run / "run", "--out", run / "data.csv" / "c.png")
    assert code == EXIT_OUTPUT and "is a file, not a directory" in err
    code, _, err = _cli(capsys, "evaluate", run / "run", "--data", run / "data.csv", "--out", run)
    assert code == EXIT_USAGE or code == EXIT_OUTPUT
    code, _, err = _cli(capsys, "build", run / "spec.yaml", "--export", "onnx", "--out", run / "one.csv")
    assert code == EXIT_OUTPUT
    assert err.strip() == f"archspec: error: cannot write to {run / 'one.csv'}: it is a file, not a directory — " \
                          "give a directory for --out"


def test_missing_output_directories_are_created(run, capsys):
    out_file = run / "new" / "deeper" / "m.json"
    code, _, _ = _cli(capsys, "evaluate", run / "run", "--data", run / "data.csv", "--out", out_file)
    assert code == EXIT_OK and json.loads(out_file.read_text())["model"]


# --- 3. numbers on the command line have the spec's bounds -----------------------------------

@pytest.mark.parametrize("argv,message", [
    (["train", "SPEC", "--epochs", "0"], "--epochs: 0 is out of range: give a number from 1 to 100,000"),
    (["train", "SPEC", "--epochs", "-1"], "--epochs: -1 is out of range"),
    (["train", "SPEC", "--max-steps", "0"], "--max-steps: 0 is out of range: give a number ≥ 1"),
    (["train", "SPEC", "--epochs", "two"], "--epochs: 'two' is not a whole number"),
    (["predict", "RUN", "--data", "x.csv", "--out", "p.csv", "--show", "-1"], "--show: -1 is out of range"),
    (["evaluate", "RUN", "--data", "x.csv", "--checkpoint", "first"], "'first' is not best, last or a step number"),
])
def test_bad_numbers_are_usage_errors(capsys, argv, message):
    code, out, err = _cli(capsys, *argv)
    assert code == EXIT_USAGE
    assert message in err and out == ""


def test_fit_refuses_zero_epochs(run):
    from archspec.errors import UsageError
    from archspec.train import fit

    with pytest.raises(UsageError, match="epochs must be a whole number ≥ 1, not 0"):
        fit(str(run / "spec.yaml"), data=str(run / "data.csv"), out=str(run / "zero"), epochs=0)


# --- 4. which checkpoint: train says the best epoch; evaluate/predict say what they use ---------

def test_checkpoint_is_named_everywhere(run, capsys):
    code, out, _ = _cli(capsys, "evaluate", run / "run", "--data", run / "data.csv")
    assert code == EXIT_OK
    first = out.splitlines()[0]
    assert first.startswith("checkpoint best: step ") and ", epoch " in first and "(validation loss " in first
    code, out, _ = _cli(capsys, "evaluate", run / "run", "--data", run / "data.csv", "--format", "json",
                        "--checkpoint", "last")
    info = json.loads(out)["checkpoint"]
    assert info["checkpoint"] == "last" and info["epoch"] == 2 and info["step"] == 6 and info["metric"] == "loss"
    code, out, _ = _cli(capsys, "predict", run / "run", "--data", run / "data.csv", "--out", run / "p.csv",
                        "--checkpoint", "6")
    assert code == EXIT_OK and out.startswith("checkpoint ") and ": step 6, epoch 2" in out.splitlines()[0]
    code, _, err = _cli(capsys, "predict", run / "run", "--data", run / "data.csv", "--out", run / "p.csv",
                        "--checkpoint", "5")
    assert code == EXIT_CHECKPOINT and "has no checkpoint at step 5: it keeps steps" in err


def test_train_ends_by_naming_the_best_epoch(tmp_path, capsys):
    (tmp_path / "spec.yaml").write_text(SPEC)
    _data(48).to_csv(tmp_path / "data.csv", index=False)
    code, out, _ = _cli(capsys, "train", tmp_path / "spec.yaml", "--data", tmp_path / "data.csv", "--out",
                        tmp_path / "run", "--epochs", "1", "--progress", "lines")
    assert code == EXIT_OK
    assert "best epoch: 1 (step 3), the last — lowest validation loss" in out
    assert "validation metrics of epoch 1:" in out
    from archspec.plot import best_epoch, read_metrics

    assert best_epoch(tmp_path / "run", read_metrics(tmp_path / "run")) == 1


# --- 5. formats, --show, plurals -------------------------------------------------------------

def test_unknown_prediction_format_is_refused(run, capsys):
    code, _, err = _cli(capsys, "predict", run / "run", "--data", run / "data.csv", "--out", run / "preds.txt")
    assert code == EXIT_USAGE
    assert "extension '.txt' — the format follows the extension: use .csv, .jsonl, .ndjson, .parquet" in err
    assert not (run / "preds.txt").exists()


def test_show_gives_scores_empty_sets_and_aligned_names(run, capsys):
    code, out, _ = _cli(capsys, "predict", run / "run", "--data", run / "data.csv", "--out", run / "s.csv",
                        "--show", "1")
    assert code == EXIT_OK
    lines = out.splitlines()
    assert lines[1] == "wrote 48 rows × 16 columns to " + str(run / "s.csv")
    shown = {ln.split()[0]: ln for ln in lines[3:]}
    assert "(true: (none))" in shown["a_very_long_head_name_for_alignment"]  # empty label set, not nan
    assert "score " in shown["match"] and " prob " in shown["match"]
    assert "prob " in shown["y"]
    starts = {ln.index(ln.split()[1], len(ln.split()[0]) + 6) for ln in lines[3:]}
    assert len(starts) == 1  # every prediction starts in the same column


def test_one_row_is_singular(run, capsys):
    code, out, _ = _cli(capsys, "predict", run / "run", "--data", run / "one.csv", "--out", run / "one.jsonl")
    assert code == EXIT_OK and "wrote 1 row × 16 columns" in out


# --- 6. evaluate --format json has one shape ---------------------------------------------------

def test_evaluate_json_has_one_shape(run, capsys):
    _, out, _ = _cli(capsys, "evaluate", run / "run", "--data", run / "data.csv", "--format", "json")
    plain = json.loads(out)
    _, out, _ = _cli(capsys, "evaluate", run / "run", "--data", run / "data.csv", "--format", "json", "--baseline")
    both = json.loads(out)
    assert set(plain) == {"checkpoint", "model"} and set(both) == {"checkpoint", "model", "baseline"}
    assert plain["model"] == both["model"] and "loss" in plain["model"]


# --- 7. the same prediction gives the same labels in evaluate and predict ----------------------

def test_evaluate_scores_the_labels_predict_writes(run, capsys):
    """The late fusion takes its first member's threshold, 0.0 (not 0.5 through `or 0.5`): every
    label is predicted, in `predict`'s file and behind `evaluate`'s metrics alike."""
    code, out, _ = _cli(capsys, "evaluate", run / "run", "--data", run / "data.csv", "--format", "json")
    metrics = json.loads(out)["model"]
    _cli(capsys, "predict", run / "run", "--data", run / "data.csv", "--out", run / "labels.csv")
    pred = pd.read_csv(run / "labels.csv", keep_default_na=False)
    truth = pd.read_csv(run / "data.csv", keep_default_na=False)["tags"]
    assert set(pred["both"]) == {"p|q|r"}
    assert set(pred["a_very_long_head_name_for_alignment"]) == {"p|q|r"}

    def onehot(cells):
        return np.array([[t in str(c).split("|") for t in "pqr"] for c in cells])

    p, t = onehot(pred["both"]), onehot(truth)
    assert metrics["both/binary_accuracy"] == pytest.approx((p == t).mean())
    tp, fp, fn = (p & t).sum(), (p & ~t).sum(), (~p & t).sum()
    assert metrics["both/f1_micro"] == pytest.approx(2 * tp / (2 * tp + fp + fn))


# --- 9. multilabel cells separated by spaces ---------------------------------------------------

TAGS_SPEC = """\
archspec: 1
name: tags
inputs:
  x: {type: numeric, columns: [a, b]}
heads:
  tags: {type: multilabel, from: x, labels: LABELS}
training: {batch_size: 8, epochs: 1, validation_split: 0.25}
"""


def _tags(tmp_path, labels: str) -> tuple[Path, Path]:
    spec, data = tmp_path / "tags.yaml", tmp_path / "tags.csv"
    spec.write_text(TAGS_SPEC.replace("LABELS", labels))
    cells = ["cheap durable", "cheap", "durable stylish", ""] * 4
    pd.DataFrame({"a": range(16), "b": range(16), "tags": cells}).to_csv(data, index=False)
    return spec, data


def test_space_separated_labels_get_a_hint_naming_the_separator(tmp_path, capsys):
    spec, data = _tags(tmp_path, "[cheap, durable, stylish]")
    code, _, err = _cli(capsys, "train", spec, "--data", data, "--out", tmp_path / "run")
    assert code == 3
    assert "label 'cheap durable' is not one of the labels of heads.tags.labels (cheap, durable, stylish), " \
           "but its words are — the cell lists labels separated by spaces: set `separator: \" \"` on heads.tags" in err


def test_the_separator_field_splits_on_spaces(tmp_path, capsys):
    spec, data = _tags(tmp_path, '[cheap, durable, stylish], separator: " "')
    code, _, err = _cli(capsys, "train", spec, "--data", data, "--out", tmp_path / "run", "--progress", "lines")
    assert code == EXIT_OK, err
    from archspec.data.convert import label_sets

    assert label_sets(pd.read_csv(data)["tags"], "tags", " ")[0][:3] == [["cheap", "durable"], ["cheap"],
                                                                         ["durable", "stylish"]]


def test_fitted_labels_with_spaces_are_a_warning(tmp_path, capsys):
    spec, data = _tags(tmp_path, "5")
    code, _, err = _cli(capsys, "train", spec, "--data", data, "--out", tmp_path / "run", "--progress", "lines")
    assert code == EXIT_OK
    assert "archspec: warning: column 'tags': 2 fitted labels of heads.tags hold spaces ('cheap durable') — if a " \
           "cell lists several labels separated by spaces, set `separator: \" \"` on the head" in err
    spec, data = _tags(tmp_path, "2")
    code, _, err = _cli(capsys, "train", spec, "--data", data, "--out", tmp_path / "run2")
    assert code == 3 and "2 of them hold spaces ('cheap durable'): if a cell lists labels separated by spaces, " \
                         "set `separator: \" \"` on heads.tags" in err


# --- progress: a live rich bar, or plain lines for logs --------------------------------------

def test_progress_bar_and_plain_lines(capsys):
    from archspec.progress import Progress

    logged = []
    bar = Progress(enabled=True, log=logged.append)
    bar.start_epoch(1, 2, 4)
    for done in range(1, 5):
        bar.update(done, loss=0.5, lr=1e-3)
    assert bar._bar.tasks[0].completed == 4 and "loss 0.5" in bar._bar.tasks[0].fields["stats"]
    bar.end_epoch({"epoch": 1, "step": 4, "train_loss": 0.5, "val/loss": 0.4})
    assert logged == ["epoch 1/2 step 4  train_loss 0.5000  loss 0.4000"]
    plain = Progress(enabled=False, log=logged.append)
    plain.start_epoch(1, 2, 4)
    plain.update(4, loss=0.5)
    plain.end_epoch({"epoch": 1, "step": 4, "train_loss": 0.5})
    assert logged[-1] == "epoch 1/2 step 4  train_loss 0.5000"
    assert "\r" not in capsys.readouterr().out  # nothing drawn in plain mode
