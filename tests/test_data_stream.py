"""Data at any size (issue 8): flat memory, bit-identical runs with workers and a trained WordPiece
vocabulary, located bad rows found at load time, the cache, streaming predictions, multi-node flags."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from archspec.data import open_table
from archspec.data.store import cache_dir

from test_train import ENV, PY, _assert_identical, _train_cmd, _wait_for_step, _weights

MULTIMODAL = """\
archspec: 1
name: mm
inputs:
  text: {type: text, column: text, max_length: 8, tokenizer: {type: wordpiece, vocab_size: 60, min_frequency: 1}}
  image: {type: image, column: image, size: [8, 8], channels: 3, normalize: unit}
encoders:
  words:
    type: transformer
    input: text
    config: {model_type: bert, vocab_size: 64, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2,
             intermediate_size: 16, max_position_embeddings: 16}
    pooling: mean
  pixels: {type: cnn, input: image, channels: [4]}
fusions:
  both: {type: early, inputs: [words, pixels]}
heads:
  y: {type: multiclass, from: both, classes: 3}
training:
  batch_size: 4
  epochs: 2
  validation_split: 0.25
  seed: 11
  num_workers: 2
  checkpoint_every: 1
ON_BAD_ROW
"""

WORDS = "red green blue small large round square bright dark soft hard light heavy".split()


def _images(d: Path, n: int, size: int = 8, seed: int = 0) -> list[str]:
    from PIL import Image

    r = np.random.default_rng(seed)
    (d / "img").mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        name = f"img/{i}.png"
        Image.fromarray(r.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(d / name)
        names.append(name)
    return names


def _multimodal(tmp_path: Path, n: int = 40, on_bad_row: str = "") -> tuple[Path, Path]:
    r = random.Random(0)
    spec = tmp_path / "mm.yaml"
    spec.write_text(MULTIMODAL.replace("ON_BAD_ROW", f"  on_bad_row: {on_bad_row}" if on_bad_row else ""))
    df = pd.DataFrame({"text": [" ".join(r.choice(WORDS) for _ in range(r.randint(2, 6))) for _ in range(n)],
                       "image": _images(tmp_path, n), "y": [i % 3 for i in range(n)]})
    data = tmp_path / "data.csv"
    df.to_csv(data, index=False)
    return spec, data


@pytest.mark.integration
def test_two_fresh_runs_and_a_killed_resumed_run_are_bit_identical(tmp_path):
    """WordPiece text + image, 2 workers: fresh processes agree to the bit, and so does SIGKILL + --resume."""
    spec, data = _multimodal(tmp_path)
    runs = []
    for name in ("a", "b"):
        res = subprocess.run(_train_cmd(str(spec), "--data", str(data), "--out", str(tmp_path / name)), env=ENV,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "2 data workers" in res.stdout
        runs.append(tmp_path / name)
    vocab = [json.loads((r / "preprocess" / "tokenizers" / "text" / "tokenizer.json").read_text())["model"]["vocab"]
             for r in runs]
    assert vocab[0] == vocab[1]
    _assert_identical(_weights(runs[0]), _weights(runs[1]))
    # killed at a random step while workers are running, then resumed
    run = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(str(spec), "--data", str(data), "--out", str(run)), env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_step(run, random.Random().randint(2, 14), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    res = subprocess.run(_train_cmd("--resume", str(run)), env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    _assert_identical(_weights(runs[0]), _weights(run))


def _break(tmp_path: Path, data: Path) -> tuple[int, int]:
    """A JPEG cut in half (its header passes the pre-flight; decoding fails in a worker) and a CSV line
    with its label cut off. Returns their 0-based data rows."""
    from PIL import Image

    r = np.random.default_rng(1)
    jpg = tmp_path / "img" / "cut.jpg"
    Image.fromarray(r.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(jpg, quality=95)
    jpg.write_bytes(jpg.read_bytes()[:-200])
    lines = data.read_text().splitlines()
    lines[1 + 5] = lines[1 + 5].rsplit(",", 1)[0].replace("img/5.png", "img/cut.jpg")  # keep the label
    lines[1 + 5] += ",1"
    lines[1 + 9] = lines[1 + 9].rsplit(",", 1)[0]  # truncated: the label is gone
    data.write_text("\n".join(lines) + "\n")
    return 5, 9


def test_bad_rows_are_located_or_skipped_and_counted(tmp_path, capsys):
    from archspec.cli import main

    spec, data = _multimodal(tmp_path, n=20)
    spec.write_text(spec.read_text().replace("num_workers: 2", "num_workers: 1").replace("epochs: 2", "epochs: 1")
                    .replace("validation_split: 0.25", "validation_split: 0.0"))
    cut, truncated = _break(tmp_path, data)

    def train(out):
        code = main(["train", str(spec), "--data", str(data), "--out", str(tmp_path / out), "--progress", "lines"])
        return code, capsys.readouterr()

    # the truncated line is found by the streaming pre-flight: file, line, column
    code, err = train("e")
    assert code == 3, err
    assert f"data.csv:{truncated + 2}:y: missing label" in err.err and "Traceback" not in err.err
    assert "cut.jpg" not in err.err  # its header is fine: only decoding finds it
    # with the truncated line repaired, the cut JPEG is found while loading, in a worker: same form, exit 3
    lines = data.read_text().splitlines()
    lines[1 + truncated] += ",2"
    data.write_text("\n".join(lines) + "\n")
    code, err = train("e2")
    assert code == 3, err
    assert f"data.csv:{cut + 2}:image: unreadable or truncated image" in err.err and "Traceback" not in err.err
    # on_bad_row: skip — both rows are left out, counted and reported
    lines[1 + truncated] = lines[1 + truncated].rsplit(",", 1)[0]
    data.write_text("\n".join(lines) + "\n")
    spec.write_text(spec.read_text() + "  on_bad_row: skip\n")
    code, res = train("s")
    assert code == 0, res
    assert "skipping 1 train row with problems" in res.out  # the pre-flight found the truncated line
    assert "skipped 2 training and 0 validation rows with problems" in res.out
    record = json.loads((tmp_path / "s" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["skipped_rows"] == 2
    # predict leaves the unreadable image out (it needs no label), and says which row each prediction is for
    assert main(["predict", str(tmp_path / "s"), "--data", str(data), "--out", str(tmp_path / "p.csv")]) == 0
    out = pd.read_csv(tmp_path / "p.csv")
    assert len(out) == 19 and cut not in set(out["row"]) and truncated in set(out["row"])


MEMORY_SCRIPT = """
import resource, sys, torch
torch.set_num_threads(1)
from archspec.train import train
from archspec.inference import predict
run = train(sys.argv[1], data=sys.argv[2], out=sys.argv[3], max_steps=3, progress=False, log=lambda *a: None)
predict(run, sys.argv[2], sys.argv[3] + "/pred.parquet")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

IMAGE_SPEC = """\
archspec: 1
name: img
inputs:
  image: {type: image, column: image, size: [64, 64], channels: 3, normalize: unit}
  x: {type: numeric, columns: [a]}
encoders:
  pixels: {type: cnn, input: image, channels: [4]}
fusions:
  both: {type: early, inputs: [pixels, x]}
heads:
  y: {type: binary, from: both}
training: {batch_size: 8, epochs: 1, num_workers: 0, validation_split: 0.1}
"""


@pytest.mark.integration
def test_memory_does_not_grow_with_the_rows(tmp_path):
    """Train a few steps and predict on N and 8N rows of 64×64 images: peak RSS barely moves, where the
    eager path (every image decoded up front) would grow by 7N × 48 KiB."""
    n = 250
    _images(tmp_path, 8 * n, size=64)
    (tmp_path / "s.yaml").write_text(IMAGE_SPEC)
    peaks = {}
    for rows in (n, 8 * n):
        df = pd.DataFrame({"image": [f"img/{i}.png" for i in range(rows)], "a": np.arange(rows) % 7,
                           "y": np.arange(rows) % 2})
        df.to_csv(tmp_path / f"d{rows}.csv", index=False)
        res = subprocess.run([PY, "-c", textwrap.dedent(MEMORY_SCRIPT), str(tmp_path / "s.yaml"),
                              str(tmp_path / f"d{rows}.csv"), str(tmp_path / f"r{rows}")],
                             env=ENV, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        peaks[rows] = int(res.stdout.strip().splitlines()[-1]) * 1024
        assert len(pd.read_parquet(tmp_path / f"r{rows}" / "pred.parquet")) == rows
    eager_growth = 7 * n * 3 * 64 * 64 * 4  # float32 pixels held for every row: ~86 MB
    bound = 30 * 2**20
    assert bound < eager_growth / 2
    assert peaks[8 * n] - peaks[n] < bound, peaks


DDP_ROWS = """
import json, sys, torch
from archspec.data import stream
from archspec.train import fit
torch.set_num_threads(1)
seen = []
get = stream.RowDataset.__getitem__
def record(self, key):
    if self.name == "train":
        seen.append([key.epoch, key.index, list(self.table.row_ids(list(key.positions)).tolist())])
    return get(self, key)
stream.RowDataset.__getitem__ = record
res = fit(sys.argv[1], data=sys.argv[2], out=sys.argv[3], progress=False, log=lambda *a: None)
import torch.distributed as dist
json.dump(seen, open(f"{sys.argv[3]}-rank{dist.get_rank()}.json", "w"))
"""


@pytest.mark.integration
def test_ddp_ranks_read_disjoint_shards(tmp_path):
    from test_train import _small

    from archspec.data import split_positions

    spec, data = _small(tmp_path, epochs=2, n=60)
    script = tmp_path / "ddp_rows.py"
    script.write_text(textwrap.dedent(DDP_ROWS))
    res = subprocess.run([PY, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script),
                          str(spec), str(data), str(tmp_path / "ddp")], env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    seen = [json.loads((tmp_path / f"ddp-rank{r}.json").read_text()) for r in range(2)]
    train_rows = set(split_positions(60, 0.25, 7)[0].tolist())  # 45 rows: 5 global batches of 8, one of 5
    for epoch in range(2):
        parts = [[row for e, _, rows in s if e == epoch for row in rows] for s in seen]
        assert len(parts[0]) == len(parts[1]) == 20  # the last batch (5 rows) cannot be cut in two: dropped
        assert not set(parts[0]) & set(parts[1])  # each rank read only its shard
        assert set(parts[0]) | set(parts[1]) <= train_rows and len(set(parts[0]) | set(parts[1])) == 40


def test_tables_are_converted_once_keyed_by_content_and_clearable(tmp_path, monkeypatch):
    from archspec.cli import main

    monkeypatch.setenv("ARCHSPEC_CACHE_DIR", str(tmp_path / "cache"))
    p = tmp_path / "t.csv"
    p.write_text('a,b\n1,x\n2,"y, z"\n3,w,extra\n4,\n')
    t = open_table(p)
    assert cache_dir() == tmp_path / "cache" and t.path.parent == tmp_path / "cache" / "tables"
    assert t.num_rows == 3 and t.take([0, 1, 2])["b"].tolist()[:2] == ["x", "y, z"]
    assert t.take([2]).index.tolist() == [3]  # row ids count the unreadable line
    assert [(b.row, b.code) for b in t.bad_rows] == [(2, "bad-line")] and "line 4" in t.bad_rows[0].message
    stamp = t.path.stat().st_mtime_ns
    assert open_table(p).path.stat().st_mtime_ns == stamp  # not converted again
    p.write_text("a,b\n1,x\n")
    assert open_table(p).path != t.path  # new content, new entry
    j = tmp_path / "t.jsonl"
    j.write_text('{"a": 1, "v": [1, 2]}\n{"a": \n{"a": true, "later": "x"}\n')
    tj = open_table(j)
    assert tj.columns == ["a", "v", "later"] and tj.take([0, 1])["v"].tolist()[0] == "[1, 2]"
    assert [b.row for b in tj.bad_rows] == [1]
    assert main(["data", "clear-cache"]) == 0
    assert not (tmp_path / "cache" / "tables").exists()


def test_predictions_stream_to_csv_jsonl_and_parquet(tmp_path):
    from test_train import _small

    from archspec.inference import predict
    from archspec.train import train

    spec, data = _small(tmp_path, epochs=1)
    run = train(spec, data=str(data), out=str(tmp_path / "run"), progress=False, log=lambda *a: None)
    frames = []
    for ext in ("csv", "jsonl", "parquet"):
        written = predict(run, data, tmp_path / f"p.{ext}", batch_size=7)  # 96 rows: 14 batches
        assert len(written) == 96 and written.columns[0] == "y"
        frames.append(pd.read_csv(tmp_path / "p.csv") if ext == "csv" else
                      pd.read_json(tmp_path / "p.jsonl", lines=True) if ext == "jsonl" else
                      pd.read_parquet(tmp_path / "p.parquet"))
    assert not list(tmp_path.glob(".p.*.tmp"))
    for f in frames[1:]:
        assert f["y"].astype(str).tolist() == frames[0]["y"].astype(str).tolist()
        np.testing.assert_allclose(f["z"], frames[0]["z"], rtol=1e-5)


def test_fit_rows_fits_inputs_on_a_seeded_sample(tmp_path):
    from archspec.data import fit_table

    spec = ("archspec: 1\nname: m\ninputs: {x: {type: numeric, columns: [a]}}\n"
            "heads: {y: {type: multiclass, from: x, classes: 3}}\n")
    p = tmp_path / "d.csv"
    pd.DataFrame({"a": np.arange(100.0), "y": ["p"] * 99 + ["q"]}).to_csv(p, index=False)
    t = open_table(p)
    full = fit_table(spec, t).state_dict()["inputs"]["x"]["shift"]
    a = fit_table(spec, t, fit_rows=10, seed=1)
    b = fit_table(spec, t, fit_rows=10, seed=1)
    assert full == [49.5] and a.state_dict() == b.state_dict() and a.state_dict()["inputs"]["x"]["shift"] != full
    assert "q" in a.label_names("y")  # label maps read every row, not only the sample


def test_multi_machine_flags_pass_through_to_torchrun(monkeypatch):
    from archspec import cli

    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    argv = ["train", "s.yaml", "--nproc-per-node", "4", "--nnodes", "2", "--node-rank=1",
            "--rdzv-endpoint", "10.0.0.1:29400", "--out", "runs/x"]
    monkeypatch.setattr(sys, "argv", ["archspec", *argv])
    assert cli.main(argv) == 0
    cmd = calls[0]
    i = cmd.index("-m", 2)
    assert cmd[1:i] == ["-m", "torch.distributed.run", "--nproc-per-node=4", "--rdzv-backend=c10d", "--nnodes=2",
                        "--node-rank=1", "--rdzv-endpoint=10.0.0.1:29400"]
    assert cmd[i:] == ["-m", "archspec", "train", "s.yaml", "--out", "runs/x"]


def test_every_input_type_has_one_data_home():
    from archspec.data import INPUT_DATA, register_input_data
    from archspec.registry import REGISTRIES, RegistryError

    assert set(REGISTRIES["input"].configs) == set(INPUT_DATA)
    with pytest.raises(RegistryError, match="duplicate data home for input type 'image'"):
        register_input_data("image")(type("Again", (), {}))


def test_the_number_of_workers_does_not_change_the_weights(tmp_path):
    from archspec.train import fit

    spec, data = _multimodal(tmp_path, n=24)
    models = []
    for w in (0, 2):
        spec.write_text(spec.read_text().replace("num_workers: 2", f"num_workers: {w}")
                        .replace("num_workers: 0", f"num_workers: {w}").replace("epochs: 2", "epochs: 1"))
        res = fit(spec, data=str(data), out=str(tmp_path / f"w{w}"), progress=False, log=lambda *a: None)
        models.append(res.model.state_dict())
    _assert_identical(models[0], models[1])
