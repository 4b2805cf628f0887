"""Pretrained transformers from a local directory; a hub name that is not cached fails fast and clearly.

A tiny BERT saved with ``save_pretrained`` stands in for a downloaded model: the checker reads its
width from the directory's ``config.json`` (nothing deferred), and the build loads exactly its
weights. Tests run with ``HF_HUB_OFFLINE=1`` (see conftest): a hub name that is not cached fails at
once, without opening a connection. Downloading on first use is tested against a local server in
tests/test_hub_download.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch

from archspec.build import compile_spec
from archspec.errors import BuildError
from archspec.pipeline import check_file

from conftest import ROOT

HIDDEN = 24
NOT_CACHED = "archspec-tests/no-such-model-anywhere"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A saved tiny BERT (with its pooler) and a tokenizer, under ``<tmp>/models/tiny_bert``."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("pretrained")
    path = root / "models" / "tiny_bert"
    torch.manual_seed(123)
    config = BertConfig(vocab_size=40, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=48, max_position_embeddings=32)
    model = BertModel(config).eval()
    model.save_pretrained(path)
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(35)]))
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(path)
    return root, path, model


def write_spec(directory, reference: str, pooling: str = "pooler", name: str = "spec.yaml"):
    text = f"""archspec: 1
name: pretrained_tiny
inputs:
  text:
    type: text
    column: text
    max_length: 16
    tokenizer: {{type: pretrained, name: "{reference}"}}
encoders:
  enc: {{type: transformer, input: text, pretrained: "{reference}", pooling: {pooling}}}
heads:
  label: {{type: multiclass, from: enc, classes: 3}}
"""
    path = directory / name
    path.write_text(text)
    return path


def saved_outputs(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["text"], attention_mask=batch["text.mask"])


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_checker_reads_width_from_local_config(tiny_bert, how):
    root, path, _ = tiny_bert
    ref = str(path) if how == "absolute" else "./models/tiny_bert"
    r = check_file(write_spec(root, ref, name=f"{how}.yaml"))
    assert r.ok(), [d.render() for d in r.diagnostics]
    assert [d.code for d in r.diagnostics] == []  # in particular no N-DEFERRED note
    assert r.shapes["enc"].dims == (HIDDEN,)


@pytest.mark.parametrize("how,pooling", [("absolute", "pooler"), ("relative", "pooler"), ("relative", "cls"),
                                         ("absolute", "mean")])
def test_build_loads_the_saved_weights(tiny_bert, how, pooling):
    root, path, saved = tiny_bert
    ref = str(path) if how == "absolute" else "./models/tiny_bert"
    spec = write_spec(root, ref, pooling, name=f"{how}_{pooling}.yaml")
    model = compile_spec(spec).eval()
    encoder = model.encoders["enc"].model
    # every weight of the saved model is loaded (the pooler only when it is used)
    mine = encoder.state_dict()
    for key, value in saved.state_dict().items():
        if key.startswith("pooler.") and pooling != "pooler":
            assert key not in mine
            continue
        assert torch.equal(mine[key], value), key
    batch = model.example_batch(3, seed=4)
    feats = model.encode(batch, "enc")
    ref_out = saved_outputs(saved, batch)
    if pooling == "pooler":
        expected = ref_out.pooler_output
    elif pooling == "cls":
        expected = ref_out.last_hidden_state[:, 0]
    else:
        m = batch["text.mask"].unsqueeze(-1).float()
        expected = (ref_out.last_hidden_state * m).sum(1) / m.sum(1)
    torch.testing.assert_close(feats, expected, rtol=1e-5, atol=1e-6)


def test_relative_path_resolves_against_the_spec_not_the_cwd(tiny_bert, tmp_path, monkeypatch):
    root, _, _ = tiny_bert
    spec = write_spec(root, "./models/tiny_bert", name="cwd.yaml")
    monkeypatch.chdir(tmp_path)  # ./models/tiny_bert does not exist here
    model = compile_spec(spec)
    assert model.shapes["enc"].dims == (HIDDEN,)


def test_missing_local_directory_is_a_spec_error(tmp_path):
    r = check_file(write_spec(tmp_path, "./models/nowhere"))
    assert [d.code for d in r.errors] == ["E-FILE"]
    assert "nowhere" in r.errors[0].message


def test_uncached_hub_name_is_a_deferred_note(tmp_path):
    r = check_file(write_spec(tmp_path, NOT_CACHED))
    assert r.ok()
    assert [d.code for d in r.diagnostics] == ["N-DEFERRED"]
    assert r.shapes["enc"].dims == (None,)


def test_uncached_hub_name_fails_fast_with_a_build_error(tmp_path, monkeypatch):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    spec = write_spec(tmp_path, NOT_CACHED)
    attempts = []

    def guard(sock, address):  # offline means no connection attempt at all (so no retries, no waiting)
        attempts.append(address)
        raise ConnectionRefusedError("socket guard")

    monkeypatch.setattr(socket.socket, "connect", guard)
    with pytest.raises(BuildError) as info:
        compile_spec(spec)
    assert attempts == []
    message = str(info.value)
    assert message.startswith("encoders.enc: cannot build transformer 'archspec-tests/no-such-model-anywhere': "
                              "not in the Hugging Face cache")
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in message
    assert "archspec fetch SPEC" in message and "local directory" in message
    assert "\n" not in message


def test_cli_build_of_uncached_hub_name_exits_1_without_traceback(tmp_path):
    spec = write_spec(tmp_path, NOT_CACHED)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-m", "archspec.cli", "build", str(spec)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("archspec: error: encoders.enc: cannot build transformer"), proc.stderr


def test_config_overrides_values_but_never_how_files_load(tiny_bert):
    root, path, _ = tiny_bert
    spec = write_spec(root, "./models/tiny_bert", "cls", name="override.yaml")
    text = spec.read_text().replace("pooling: cls}", "pooling: cls, config: {hidden_dropout_prob: 0.3}}")
    spec.write_text(text)
    model = compile_spec(spec)
    assert model.encoders["enc"].model.config.hidden_dropout_prob == 0.3
    spec.write_text(text.replace("hidden_dropout_prob: 0.3", "revision: other, proxies: {https: x}"))
    with pytest.raises(BuildError) as info:
        compile_spec(spec)
    assert "`config` may set model values only, not how files are loaded: remove proxies, revision" in str(info.value)


def test_a_trained_run_loads_without_the_pretrained_weights(tiny_bert, tmp_path):
    """The run's checkpoint holds every weight and the run saves the model's config: evaluating or
    predicting later builds the encoder from those (the pretrained weights may be gone)."""
    import shutil

    import pandas as pd

    from archspec.inference import load_run
    from archspec.train import train

    _, path, _ = tiny_bert
    shutil.copytree(path, tmp_path / "models" / "tiny_bert")
    spec = write_spec(tmp_path, "./models/tiny_bert", "cls", name="run.yaml")
    words = [f"w{i}" for i in range(30)]
    df = pd.DataFrame({"text": [" ".join(words[i % 7: i % 7 + 4]) for i in range(24)],
                       "label": [i % 3 for i in range(24)]})
    df.to_csv(tmp_path / "train.csv", index=False)
    run = train(str(spec), data=str(tmp_path / "train.csv"), out=str(tmp_path / "run"), max_steps=2,
                progress=False, log=lambda *a, **k: None)
    assert (run / "pretrained" / "enc" / "config.json").is_file()
    model, pre, _ = load_run(run)
    batch = model.example_batch(3, seed=1)
    before = model.encode(batch, "enc")

    (tmp_path / "models" / "tiny_bert" / "model.safetensors").unlink()  # the pretrained weights are gone
    again, _, _ = load_run(run)
    torch.testing.assert_close(again.encode(batch, "enc"), before)
