"""Audio inputs (sound files → mono waveform) and the log-mel front end: static shapes, training, bad files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from archspec.build import compile_spec
from archspec.cli import main
from archspec.data import preflight
from archspec.errors import DataError
from archspec.inference import evaluate
from archspec.pipeline import check_text
from archspec.train import fit

SPEC = """archspec: 1
name: audio_tiny
inputs:
  clip: {type: audio, column: clip, sample_rate: 8000, duration: 0.5}
encoders:
  mel: {type: log_mel, input: clip, n_mels: 32, n_fft: 256, hop_length: 128}
  cnn: {type: cnn, input: mel, channels: [4, 8]}
heads:
  label: {type: multiclass, from: cnn, classes: [low, high]}
training:
  epochs: 2
  batch_size: 4
"""


def _clips(tmp_path, n=12):
    """Tones at two pitches, in WAV/FLAC/OGG, at three sample rates, some stereo, of varied length."""
    r = np.random.default_rng(0)
    rows = []
    for i in range(n):
        label = ("low", "high")[i % 2]
        rate = (8000, 16000, 22050)[i % 3]
        t = np.arange(int(rate * (0.3 + 0.5 * r.random()))) / rate
        x = 0.5 * np.sin(2 * np.pi * (300 if label == "low" else 2000) * t)
        if i % 4 == 0:
            x = np.stack([x, 0.5 * x], axis=1)
        name = f"c{i}.{('wav', 'flac', 'ogg')[i % 3]}"
        sf.write(tmp_path / name, x, rate)
        rows.append({"clip": name, "label": label})
    df = pd.DataFrame(rows)
    path = tmp_path / "clips.csv"
    df.to_csv(path, index=False)
    return path, df


def test_shapes_are_static_and_proven_at_build():
    checked = check_text(SPEC, "a.yaml")
    assert checked.ok()
    assert checked.shapes["clip"].dims == (4000,)
    assert checked.shapes["mel"].dims == (1, 32, 4000 // 128 + 1)
    assert checked.shapes["cnn"].dims == (8,)
    model = compile_spec(checked)  # the dry run checks every inferred shape against the real module
    out = model.node_module("mel")(torch.randn(3, 4000))
    assert out.shape == (3, 1, 32, 32)
    assert model.parameter_counts("mel") == (0, 0)


def test_short_input_for_the_fft_is_a_located_error():
    c = check_text(SPEC.replace("duration: 0.5", "duration: 0.01"), "a.yaml")
    err = [d.render() for d in c.errors]
    assert "a.yaml:6:" in err[0] and "n_fft 256 needs at least 129 samples" in err[0]


def test_decoding_resamples_mixes_down_and_crops(tmp_path):
    from archspec.data.audio import decode

    rate = 22050
    t = np.arange(rate) / rate
    sf.write(tmp_path / "s.flac", np.stack([np.sin(2 * np.pi * 440 * t), np.zeros(rate)], 1), rate)
    x = decode(tmp_path / "s.flac", 8000, 4000)
    assert x.shape == (4000,) and x.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) * 8000 / 4000 - 440) <= 2  # the tone survives resampling
    assert 0.4 < np.abs(x).max() < 0.6  # stereo averaged to mono
    sf.write(tmp_path / "short.wav", np.ones(100, dtype=np.float32) * 0.25, 8000)
    y = decode(tmp_path / "short.wav", 8000, 4000)
    assert y[:100].min() > 0.2 and not y[100:].any()  # zero-padded


def test_a_spec_with_audio_trains_evaluates_and_predicts(tmp_path):
    data, _ = _clips(tmp_path)
    spec = tmp_path / "a.yaml"
    spec.write_text(SPEC)
    res = fit(spec, data=str(data), out=str(tmp_path / "run"), progress=False, log=lambda *a: None)
    m = evaluate(res.run_dir, data)
    assert "label/accuracy" in m and np.isfinite(m["loss"])
    assert main(["predict", str(res.run_dir), "--data", str(data), "--out", str(tmp_path / "p.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(pd.read_csv(data))


def test_missing_or_corrupt_audio_is_a_located_data_error(tmp_path, capsys):
    data, df = _clips(tmp_path, n=8)
    (tmp_path / "junk.wav").write_bytes(b"RIFF not really a wave file")
    df = pd.concat([df, pd.DataFrame({"clip": ["nothere.ogg", "junk.wav"], "label": ["low", "high"]})],
                   ignore_index=True)
    df.to_csv(data, index=False)
    checked = check_text(SPEC, str(tmp_path / "a.yaml"))
    with pytest.raises(DataError) as exc:
        preflight(checked, df, data, "train")
    assert exc.value.exit_code == 3
    msg = str(exc.value)
    assert "clips.csv:10:clip: audio file not found" in msg and "nothere.ogg" in msg
    assert "clips.csv:11:clip: unreadable audio file" in msg and "junk.wav" in msg
    spec = tmp_path / "a.yaml"
    spec.write_text(SPEC)
    assert main(["train", str(spec), "--data", str(data), "--out", str(tmp_path / "run")]) == 3
    assert "audio file" in capsys.readouterr().err
