"""`archspec train --init-from RUN`: the unfreeze stage of transfer learning starts from stage 1's weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from archspec import checkpoint as ckpt
from archspec.build import compile_spec
from archspec.cli import main
from archspec.errors import CheckpointError
from archspec.warm_start import warm_start

SPEC = """archspec: 1
name: stage
inputs:
  x: {type: numeric, columns: [a, b, c, d]}
encoders:
  base: {type: mlp, input: x, layers: [WIDTH], trainable: TRAINABLE}
heads:
  y: {type: multiclass, from: base, layers: [8], classes: 3}
training: {batch_size: 8, epochs: 1, validation_split: 0.25, seed: 3, optimizer: {type: adam, lr: LR}}
"""


def stage(tmp_path, name, trainable="false", width="16", lr="0.01"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(SPEC.replace("TRAINABLE", trainable).replace("WIDTH", width).replace("LR", lr))
    return path


@pytest.fixture()
def first_run(tmp_path):
    r = np.random.default_rng(0)
    df = pd.DataFrame(r.normal(size=(48, 4)), columns=list("abcd"))
    df["y"] = (df.a > 0).astype(int) + (df.b > 0.5).astype(int)
    data = tmp_path / "data.csv"
    df.to_csv(data, index=False)
    run = tmp_path / "stage1"
    assert main(["train", str(stage(tmp_path, "stage1")), "--data", str(data), "--out", str(run),
                 "--progress", "lines"]) == 0
    return tmp_path, data, run


def test_second_stage_starts_from_the_first_and_trains_the_unfrozen_encoder(first_run, capsys):
    tmp_path, data, run1 = first_run
    name = "best" if ckpt.read_pointer(run1 / "checkpoints", "best", missing_ok=True) else "last"
    trained = ckpt.load_weights(run1 / "checkpoints", name)

    model = compile_spec(stage(tmp_path, "stage2", trainable="true", lr="0.001"))
    info = warm_start(model, run1, log=lambda *a: None)
    assert info == {"loaded": ["base", "y"], "fresh": [], "unused": [], "checkpoint": name}
    for key, value in model.state_dict().items():
        assert torch.equal(value, trained[key]), key
    assert model.frozen == []  # unfrozen now: the encoder trains in stage 2

    run2 = tmp_path / "stage2_run"
    capsys.readouterr()
    assert main(["train", str(tmp_path / "stage2.yaml"), "--data", str(data), "--out", str(run2),
                 "--init-from", str(run1), "--progress", "lines"]) == 0
    assert f"initialised from {run1} ({name} checkpoint): base, y" in capsys.readouterr().out
    after = ckpt.load_weights(run2 / "checkpoints", "last")
    assert not torch.equal(after["encoders.base.0.weight"], trained["encoders.base.0.weight"])


def test_a_node_that_changed_size_is_refused_with_the_fix(first_run):
    tmp_path, _, run1 = first_run
    model = compile_spec(stage(tmp_path, "wider", trainable="true", width="32"))
    with pytest.raises(CheckpointError) as info:
        warm_start(model, run1)
    msg = str(info.value)
    assert "'encoders.base.0.weight' has shape (16, 4) there but (32, 4) in this spec" in msg
    assert "rename it to learn it from scratch" in msg


def test_init_from_and_resume_together_is_a_usage_error(first_run, capsys):
    tmp_path, _, run1 = first_run
    assert main(["train", str(tmp_path / "stage1.yaml"), "--init-from", str(run1), "--resume", str(run1)]) == 2
    assert "give only one" in capsys.readouterr().err
