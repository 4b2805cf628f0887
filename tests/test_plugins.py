"""Third-party components arrive through the `archspec.components` entry-point group.

A fake installed distribution (a module plus its ``.dist-info`` with ``entry_points.txt``) is put
on ``PYTHONPATH`` of a fresh interpreter, which then validates, schema-dumps and compiles a spec
using the plugin's encoder — exactly what ``pip install archspec-myplugin`` would give a user. The
subprocess keeps the registration out of this test process's registries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import archspec.nn  # noqa: F401  (registers the built-in builders, so duplicates are detectable)
from archspec.registry import REGISTRIES, RegistryError, register_builder, register_config

from conftest import ROOT

PLUGIN = '''
"""A plugin adding the `my_encoder` encoder: config torch-free, builder imports torch lazily."""
from typing import Literal

from archspec.registry import register_builder, register_config
from archspec.shapes import FEATURES, Shape
from archspec.spec.base import PositiveInt
from archspec.spec.encoders import EncoderNode


@register_config("encoder", "my_encoder")
class MyEncoderConfig(EncoderNode):
    """Doubles its input, then projects it to `width`."""

    type: Literal["my_encoder"]
    width: PositiveInt = 4
    """Output width."""
    accepts = frozenset({FEATURES})

    def infer(self, ins, ctx):
        return Shape(FEATURES, (self.width,))


@register_builder("encoder", "my_encoder")
def build_my_encoder(cfg, in_shapes, ctx):
    import torch

    class MyEncoder(torch.nn.Module):
        def __init__(self, n_in, n_out):
            super().__init__()
            self.proj = torch.nn.Linear(n_in, n_out)

        def forward(self, x):
            return self.proj(2 * x)

    return MyEncoder(ctx.width(in_shapes[0]), cfg.width)
'''

SPEC = """archspec: 1
name: uses_plugin
inputs: {x: {type: numeric, columns: [a, b, c]}}
encoders: {e: {type: my_encoder, input: x, width: 6}}
heads: {y: {type: multiclass, from: e, classes: 3}}
"""

DRIVER = '''
import json, sys
from archspec.pipeline import check_text
from archspec.registry import load_plugins

report = {}
r = check_text(SPEC)
report["valid"] = r.ok()
report["diagnostics"] = [d.render() for d in r.diagnostics]
report["shape"] = str(r.shapes.get("e"))
report["torch_after_validate"] = "torch" in sys.modules

typo = check_text(SPEC.replace("type: my_encoder", "type: my_encodr"))
report["typo"] = [d.render() for d in typo.diagnostics]

from archspec.spec import json_schema
schema = json.dumps(json_schema())
report["schema_has_type"] = '"my_encoder"' in schema
report["schema_has_doc"] = "Doubles its input" in schema

from archspec.build import compile_spec
model = compile_spec(SPEC)
out = model(model.example_batch(2))
report["out_shape"] = list(out["y"].shape)
report["state_dict"] = sorted(model.state_dict())

from archspec.registry import REGISTRIES, RegistryError, register_config
try:
    register_config("encoder", "my_encoder")(type("Again", (), {}))
    report["duplicate"] = None
except RegistryError as exc:
    report["duplicate"] = str(exc)
print("REPORT " + json.dumps(report))
'''


@pytest.fixture()
def plugin_path(tmp_path):
    (tmp_path / "myplugin.py").write_text(PLUGIN)
    info = tmp_path / "myplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[archspec.components]\nmyplugin = myplugin\n")
    return tmp_path


def run_driver(plugin_path) -> dict:
    code = f"SPEC = {SPEC!r}\n" + textwrap.dedent(DRIVER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), str(ROOT / "src")]),
           "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")][-1]
    return json.loads(line[len("REPORT "):])


def test_plugin_encoder_validates_compiles_and_is_in_the_schema(plugin_path):
    report = run_driver(plugin_path)
    assert report["valid"], report["diagnostics"]
    assert report["diagnostics"] == []
    assert report["shape"] == "(B, 6) features"
    assert report["torch_after_validate"] is False  # the plugin's config is torch-free too
    assert report["schema_has_type"] and report["schema_has_doc"]
    assert report["out_shape"] == [2, 3]
    assert report["state_dict"] == ["encoders.e.proj.bias", "encoders.e.proj.weight", "heads.y.out.bias",
                                    "heads.y.out.weight"]
    assert report["duplicate"] == "duplicate encoder type 'my_encoder'"
    assert len(report["typo"]) == 1
    assert "unknown encoder type 'my_encodr' — did you mean 'my_encoder'?" in report["typo"][0]
    assert "my_encoder" in report["typo"][0].split("known:")[1]


def test_without_the_plugin_the_type_is_unknown():
    from archspec.pipeline import check_text

    r = check_text(SPEC)
    assert [d.code for d in r.errors] == ["E-UNKNOWN-TYPE"]
    assert "unknown encoder type 'my_encoder'" in r.errors[0].message


def test_duplicate_registration_is_an_error():
    configs = dict(REGISTRIES["encoder"].configs)
    builders = dict(REGISTRIES["encoder"].builders)
    with pytest.raises(RegistryError, match="duplicate encoder type 'mlp'"):
        register_config("encoder", "mlp")(type("Dup", (), {}))
    with pytest.raises(RegistryError, match="duplicate encoder builder 'mlp'"):
        register_builder("encoder", "mlp")(lambda cfg, shapes, ctx: None)
    with pytest.raises(RegistryError, match="duplicate loss type 'mse'"):
        register_config("loss", "mse")(type("Dup", (), {}))
    assert REGISTRIES["encoder"].configs == configs and REGISTRIES["encoder"].builders == builders


def test_unknown_name_suggests_the_nearest():
    assert REGISTRIES["encoder"].unknown("mpl") == "unknown encoder type 'mpl' — did you mean 'mlp'?"
    assert REGISTRIES["fusion"].unknown("erly") == "unknown fusion type 'erly' — did you mean 'early'?"
    assert REGISTRIES["head"].unknown("zzz") == "unknown head type 'zzz'"


def test_a_node_type_without_infer_is_refused_at_registration():
    from typing import Literal

    from archspec.spec.encoders import EncoderNode

    class NoShapeEncoderConfig(EncoderNode):
        type: Literal["no_shape"]

    with pytest.raises(RegistryError, match="encoder type 'no_shape' .* has no infer"):
        register_config("encoder", "no_shape")(NoShapeEncoderConfig)
    assert "no_shape" not in REGISTRIES["encoder"].configs


KINDS_PLUGIN = '''
"""A plugin adding a loss, an optimizer, a schedule and a tokenizer (configs torch-free)."""
from typing import Literal

import numpy as np

from archspec.registry import register_builder, register_config
from archspec.spec.base import PositiveFloat, PositiveInt, StrictModel
from archspec.spec.losses import LossBase


@register_config("loss", "focal")
class FocalLossConfig(LossBase):
    """Focal loss: cross-entropy down-weighting easy examples."""

    type: Literal["focal"]
    applies_to = ("multiclass",)
    gamma: PositiveFloat = 2.0
    """Focusing parameter."""


@register_builder("loss", "focal")
def build_focal(cfg, on_probs, head):
    import torch.nn.functional as F

    def loss(logits, target, outputs):
        logp = F.log_softmax(logits, -1).gather(1, target[:, None]).squeeze(1)
        return (-(1 - logp.exp()) ** cfg.gamma * logp).mean()

    return loss


@register_config("optimizer", "plain_sgd")
class PlainSGDConfig(StrictModel):
    """SGD without momentum or decay."""

    type: Literal["plain_sgd"]
    lr: PositiveFloat = 0.05
    """Learning rate."""


@register_builder("optimizer", "plain_sgd")
def build_plain_sgd(cfg, params):
    import torch

    return torch.optim.SGD(params, lr=cfg.lr)


@register_config("schedule", "halving")
class HalvingScheduleConfig(StrictModel):
    """Halve the rate every `every` steps."""

    type: Literal["halving"]
    every: PositiveInt = 2
    """Steps between halvings."""


@register_builder("schedule", "halving")
def halving(cfg, step, total_steps, peak):
    return peak * 0.5 ** (step // cfg.every)


@register_config("tokenizer", "chars")
class CharTokenizerConfig(StrictModel):
    """One id per character (fitted on the training text)."""

    type: Literal["chars"]


@register_builder("tokenizer", "chars")
class CharTokenizer:
    kind = "chars"

    def __init__(self, chars, max_length):
        self.chars, self.max_length = list(chars), max_length

    @classmethod
    def fit(cls, cfg, texts, max_length, base_dir, node):
        return cls(sorted({c for t in texts for c in t}), max_length)

    @classmethod
    def load(cls, directory, max_length):
        return cls(open(f"{directory}/chars.txt", encoding="utf-8").read(), max_length)

    def save(self, directory):
        import os

        os.makedirs(directory, exist_ok=True)
        open(f"{directory}/chars.txt", "w", encoding="utf-8").write("".join(self.chars))

    vocab_size = property(lambda self: len(self.chars) + 2)
    pad_id = 0

    def encode(self, texts):
        ids = np.zeros((len(texts), self.max_length), dtype=np.int64)
        for i, t in enumerate(texts):
            row = [self.chars.index(c) + 2 if c in self.chars else 1 for c in t][:self.max_length]
            ids[i, :len(row)] = row
        return ids, (ids > 0).astype(np.int64)
'''

KINDS_SPEC = """archspec: 1
name: uses_kinds
inputs:
  x: {type: numeric, columns: [a, b]}
  t: {type: text, column: s, max_length: 8, tokenizer: {type: chars}}
encoders:
  bag: {type: embedding_bag, input: t, dim: 4}
fusions:
  f: {type: early, inputs: [x, bag]}
heads:
  y: {type: multiclass, from: f, classes: 2, loss: {type: focal, gamma: 1.5}}
training:
  batch_size: 4
  epochs: 2
  validation_split: 0.25
  optimizer: {type: plain_sgd, lr: 0.1}
  schedule: {type: halving, every: 1}
"""

KINDS_DRIVER = '''
import json, sys
from pathlib import Path
from archspec.pipeline import check_text

report = {}
r = check_text(SPEC)
report["diagnostics"] = [d.render() for d in r.diagnostics]
bad = check_text(SPEC.replace("type: focal", "type: focl"))
report["typo"] = [d.render() for d in bad.diagnostics]
from archspec.spec import json_schema
schema = json.dumps(json_schema())
report["in_schema"] = [n for n in ("focal", "plain_sgd", "halving", "chars") if f'"{n}"' in schema]

import pandas as pd
tmp = Path(sys.argv[1])
(tmp / "spec.yaml").write_text(SPEC)
rows = [{"a": i % 3, "b": -i % 5, "s": "ab" if i % 2 else "ba c", "y": i % 2} for i in range(16)]
pd.DataFrame(rows).to_csv(tmp / "data.csv", index=False)
from archspec.train import fit
from archspec.optim import lr_at
res = fit(str(tmp / "spec.yaml"), data=str(tmp / "data.csv"), out=str(tmp / "run"), log=lambda *a: None)
report["steps"] = res.steps
report["optimizer"] = type(__import__("archspec.optim").optim.make_optimizer(
    r.spec.training.optimizer, res.model.parameters())).__name__
report["lrs"] = [lr_at(i, 0.1, 6, r.spec.training.schedule) for i in range(4)]
from archspec.inference import evaluate
report["metrics"] = sorted(evaluate(str(tmp / "run"), str(tmp / "data.csv")))
report["saved_tokenizer"] = (tmp / "run/preprocess/tokenizers/t/chars.txt").is_file()
print("REPORT " + json.dumps(report))
'''


def test_plugin_loss_optimizer_schedule_tokenizer(tmp_path):
    """One component of each non-node kind from a plugin: validated, in the schema, and used by
    the build, the training loop and a reloaded run (every builder dispatches through its registry)."""
    plugin = tmp_path / "plug"
    plugin.mkdir()
    (plugin / "kindsplugin.py").write_text(KINDS_PLUGIN)
    info = plugin / "kindsplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kindsplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[archspec.components]\nkindsplugin = kindsplugin\n")
    code = f"SPEC = {KINDS_SPEC!r}\n" + textwrap.dedent(KINDS_DRIVER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), str(ROOT / "src")]), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")][-1][7:])
    assert report["diagnostics"] == []
    assert len(report["typo"]) == 1 and "'focl'" in report["typo"][0]
    assert "did you mean 'focal'?" in report["typo"][0]
    assert report["in_schema"] == ["focal", "plain_sgd", "halving", "chars"]
    assert report["steps"] == 6  # 12 training rows / batch 4 × 2 epochs
    assert report["optimizer"] == "SGD"
    assert report["lrs"] == [0.1, 0.05, 0.025, 0.0125]
    assert report["metrics"] == ["loss", "y/accuracy", "y/loss"]
    assert report["saved_tokenizer"]
