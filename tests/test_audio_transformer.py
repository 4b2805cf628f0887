"""A Hugging Face audio model (wav2vec2 / AST) as a `transformer` encoder over an `audio` input: its feature
extractor, static shapes and parameter counts proven at build, the pretrained path from a local directory
(offline), training, the sample-rate check, and export to the torch-free runtime."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from archspec.build import compile_spec
from archspec.cli import main
from archspec.params import count_params
from archspec.pipeline import check_text

transformers = pytest.importorskip("transformers")

W2V = {"model_type": "wav2vec2", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
       "intermediate_size": 32, "conv_dim": [8, 8], "conv_kernel": [10, 3], "conv_stride": [5, 2],
       "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2}
AST = {"model_type": "audio-spectrogram-transformer", "hidden_size": 16, "num_hidden_layers": 1,
       "num_attention_heads": 2, "intermediate_size": 32, "num_mel_bins": 16, "max_length": 48}


def _spec(encoder: str, rate: int = 8000, duration: float = 0.5, extra: str = "") -> str:
    return f"""archspec: 1
name: audio_hf
inputs:
  clip: {{type: audio, column: clip, sample_rate: {rate}, duration: {duration}}}
encoders:
  speech:
    type: transformer
    input: clip
{encoder}
heads:
  label: {{type: multiclass, from: speech, classes: [low, high]}}
training:
  epochs: 2
  batch_size: 4
  optimizer: {{type: adam, lr: 3.0e-3}}
{extra}"""


def _inline(conf: dict, pooling: str | None = None) -> str:
    text = f"    config: {json.dumps(conf)}\n"
    return text + (f"    pooling: {pooling}\n" if pooling else "")


def _clips(tmp_path, n=8):
    """Tones at two pitches (WAV at 8 and 16 kHz), of varied length."""
    rows = []
    for i in range(n):
        label = ("low", "high")[i % 2]
        rate = (8000, 16000)[i % 2 == 0 and i % 4 == 0]
        t = np.arange(int(rate * (0.3 + 0.05 * i))) / rate
        sf.write(tmp_path / f"c{i}.wav", 0.5 * np.sin(2 * np.pi * (300 if label == "low" else 2000) * t), rate)
        rows.append({"clip": f"c{i}.wav", "label": label})
    path = tmp_path / "clips.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _built_params(model, node="speech") -> int:
    return sum(p.numel() for p in model.node_module(node).parameters())


@pytest.mark.parametrize("pooling, dims", [(None, (16,)), ("max", (16,)), ("none", (399, 16))])
def test_wav2vec2_from_config_shapes_and_params_are_static_and_proven(pooling, dims):
    checked = check_text(_spec(_inline(W2V, pooling)), "a.yaml")
    if pooling == "none":  # frames: (4000 - 10) // 5 + 1 = 799, then (799 - 3) // 2 + 1 = 399
        assert [d.code for d in checked.errors] == ["E-SEQUENCE"]  # a head reads one vector, not frames
        checked = check_text(_spec(_inline(W2V, pooling)).replace("from: speech", "from: pooled").replace(
            "heads:", "fusions:\n  pooled: {type: cross_attention, query: speech, context: speech}\n"
            "heads:"), "a.yaml")
    assert checked.ok(), [d.render() for d in checked.errors]
    assert checked.shapes["speech"].dims == dims
    model = compile_spec(checked)  # the dry run checks the inferred shape against the module's output
    assert model.node_module("speech")(torch.randn(3, 4000)).shape == (3, *dims)
    static = count_params(checked).nodes["speech"]
    assert static.exact and static.value == _built_params(model)


def test_ast_from_config_shapes_params_and_pooling():
    for pooling, dims in (("cls", (16,)), ("pooler", (16,)), ("none", (((16 - 16) // 10 + 1) * ((48 - 16) // 10 + 1) + 2, 16))):
        spec = _spec(_inline(AST, pooling))
        if pooling == "none":
            spec = spec.replace("from: speech", "from: pooled").replace(
                "heads:", "fusions:\n  pooled: {type: cross_attention, query: speech, context: speech}\nheads:")
        checked = check_text(spec, "a.yaml")
        assert checked.ok(), [d.render() for d in checked.errors]
        assert checked.shapes["speech"].dims == dims
        model = compile_spec(checked)
        assert count_params(checked).nodes["speech"].value == _built_params(model)


def test_the_extractors_in_the_module_equal_the_transformers_ones():
    from transformers import ASTFeatureExtractor, Wav2Vec2FeatureExtractor

    from archspec.nn.hf_audio import FbankExtractor, WaveformExtractor

    rng = np.random.default_rng(0)
    wave = (0.3 * rng.standard_normal((2, 8000))).astype(np.float32)
    wave[1, 5000:] = 0  # a clip zero-padded by the loader
    for mask in (False, True):
        want = Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=mask)(
            [wave[0], wave[1, :5000]] if mask else list(wave), sampling_rate=16000, padding=True, return_tensors="np")
        got, got_mask = WaveformExtractor(True, mask)(torch.from_numpy(wave))
        np.testing.assert_allclose(got.numpy(), want["input_values"], atol=1e-4)
        if mask:
            np.testing.assert_array_equal(got_mask.numpy(), want["attention_mask"])
    for frames in (48, 64, 30):  # as many as the clip gives, padded, cropped
        fe = ASTFeatureExtractor(num_mel_bins=16, max_length=frames)
        want = fe(list(wave), sampling_rate=16000, return_tensors="np")["input_values"]
        got, _ = FbankExtractor(16000, 16, frames, True, fe.mean, fe.std)(torch.from_numpy(wave))
        np.testing.assert_allclose(got.numpy(), want, atol=1e-4)


def _save_pretrained(directory, rate=8000, mask=False):
    from transformers import AutoConfig, AutoModel, Wav2Vec2FeatureExtractor

    conf = {k: v for k, v in W2V.items() if k != "model_type"}
    model = AutoModel.from_config(AutoConfig.for_model("wav2vec2", **conf, feat_extract_norm="layer" if mask else "group"))
    model.save_pretrained(directory)
    Wav2Vec2FeatureExtractor(sampling_rate=rate, return_attention_mask=mask).save_pretrained(directory)
    return model


@pytest.mark.parametrize("mask", [False, True])
def test_pretrained_local_directory_trains_evaluates_and_predicts(tmp_path, mask, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    saved = _save_pretrained(tmp_path / "w2v", mask=mask)
    data = _clips(tmp_path)
    spec = tmp_path / "a.yaml"
    spec.write_text(_spec("    pretrained: ./w2v\n"))
    checked = check_text(spec.read_text(), str(spec), base_dir=tmp_path)
    assert checked.ok() and checked.shapes["speech"].dims == (16,)
    model = compile_spec(checked)
    assert count_params(checked).nodes["speech"].value == _built_params(model)
    loaded = model.node_module("speech").model.state_dict()
    for k, v in saved.state_dict().items():  # the pretrained weights, not a fresh init
        assert torch.equal(loaded[k], v), k
    assert model.node_module("speech").extractor.use_mask is mask
    run = tmp_path / "run"
    assert main(["train", str(spec), "--data", str(data), "--out", str(run)]) == 0
    assert json.loads((run / "pretrained" / "speech" / "preprocessor_config.json").read_text())["sampling_rate"] == 8000
    assert main(["evaluate", str(run), "--data", str(data), "--out", str(tmp_path / "m.json")]) == 0
    assert np.isfinite(json.loads((tmp_path / "m.json").read_text())["model"]["loss"])
    assert main(["predict", str(run), "--data", str(data), "--out", str(tmp_path / "p.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "p.csv")) == 8


def test_sample_rate_mismatch_is_a_located_error(tmp_path):
    _save_pretrained(tmp_path / "w2v", rate=16000)
    spec = _spec("    pretrained: ./w2v\n", rate=8000)
    checked = check_text(spec, str(tmp_path / "a.yaml"), base_dir=tmp_path)
    errs = [d for d in checked.errors if d.code == "E-SAMPLE-RATE"]
    assert len(errs) == 1, [d.render() for d in checked.diagnostics]
    text = errs[0].render()
    assert f"{tmp_path / 'a.yaml'}:4:" in text and "sample_rate: 16000" in text and "16000 Hz" in text
    assert (errs[0].line, errs[0].col) == (4, spec.splitlines()[3].index("8000") + 1)
    assert check_text(spec.replace("8000", "16000"), str(tmp_path / "a.yaml"), base_dir=tmp_path).ok()
    (tmp_path / "w2v" / "preprocessor_config.json").unlink()  # built with the 16 kHz default: the same error
    errs = [d for d in check_text(spec, str(tmp_path / "a.yaml"), base_dir=tmp_path).errors]
    assert [d.code for d in errs] == ["E-SAMPLE-RATE"] and "no preprocessor_config.json" in errs[0].message
    assert check_text(_spec(_inline(W2V)), "a.yaml").ok()  # an untrained model takes the input's rate


@pytest.mark.parametrize("encoder, code", [
    (_inline(W2V, "cls"), "E-POOLING"),  # wav2vec2 has no CLS token
    (_inline({"model_type": "bert", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
              "intermediate_size": 32}), "E-MODALITY"),  # a text model on audio
    (_inline({**W2V, "conv_kernel": [3000, 400]}), "E-SHAPE"),  # fewer samples than the convolutions need
    (_inline({**W2V, "conv_dim": [8, -1]}), "E-HF-CONFIG"),  # a list of sizes, checked element-wise
    (_inline({**W2V, "conv_kernel": [10, 3], "conv_stride": [5, 200]}), "E-SHAPE"),  # 2 frames < SpecAugment's 10
])
def test_audio_encoder_mistakes_are_located(encoder, code):
    checked = check_text(_spec(encoder), "a.yaml")
    assert code in [d.code for d in checked.errors], [d.render() for d in checked.diagnostics]


def test_an_audio_model_on_a_text_input_is_a_modality_error():
    spec = _spec(_inline(W2V)).replace("{type: audio, column: clip, sample_rate: 8000, duration: 0.5}",
                                       "{type: text, column: clip, max_length: 8, tokenizer: {type: wordpiece, vocab_size: 100}}")
    checked = check_text(spec, "a.yaml")
    assert [d.code for d in checked.errors] == ["E-MODALITY"]
    assert "reads audio" in checked.errors[0].message


@pytest.mark.parametrize("conf", [W2V, AST], ids=["wav2vec2", "ast"])
def test_export_and_torch_free_serving_of_an_audio_transformer(tmp_path, conf):
    pytest.importorskip("onnxruntime")
    from test_serving import _serve

    data = _clips(tmp_path)
    spec = tmp_path / "a.yaml"
    spec.write_text(_spec(_inline(conf)))
    run = tmp_path / "run"
    assert main(["train", str(spec), "--data", str(data), "--out", str(run)]) == 0
    assert main(["build", str(run), "--export", "onnx", "--out", str(tmp_path / "export")]) == 0
    assert main(["predict", str(run), "--data", str(data), "--out", str(tmp_path / "p.csv")]) == 0
    got = _serve(tmp_path / "export", data, tmp_path / "served.json")
    want = pd.read_csv(tmp_path / "p.csv")
    assert sorted(got) == sorted(want.columns)
    for col in want.columns:
        w = want[col].to_numpy()
        if w.dtype.kind == "f":
            np.testing.assert_allclose(np.asarray(got[col], dtype=np.float64), w, atol=1e-5, err_msg=col)
        else:
            assert [str(x) for x in got[col]] == [str(x) for x in w], col


def test_two_fresh_runs_with_one_seed_are_bit_identical(tmp_path):
    """wav2vec2's SpecAugment draws its time masks from numpy's global generator: training seeds it."""
    from safetensors.torch import load_file

    from archspec.train import fit

    data = _clips(tmp_path)
    spec = tmp_path / "a.yaml"
    spec.write_text(_spec(_inline({**W2V, "mask_time_prob": 0.5, "mask_time_length": 2})))
    weights = []
    for run in ("r1", "r2"):
        np.random.seed(len(run) + len(weights))  # whatever state the process is in
        res = fit(spec, data=str(data), out=str(tmp_path / run), max_steps=2, progress=False, log=lambda *a: None)
        last = sorted((res.run_dir / "checkpoints").glob("step-*[0-9].safetensors"))[-1]
        weights.append(load_file(str(last)))
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k


@pytest.mark.parametrize("model_type", ["hubert", "wavlm", "data2vec-audio"])
def test_other_waveform_models_have_static_frames_proven_at_build(model_type):
    spec = _spec(_inline({**W2V, "model_type": model_type}, "none")).replace("from: speech", "from: pooled").replace(
        "heads:", "fusions:\n  pooled: {type: cross_attention, query: speech, context: speech}\nheads:")
    checked = check_text(spec, "a.yaml")
    assert checked.ok() and checked.shapes["speech"].dims == (399, 16)
    model = compile_spec(checked)  # the dry run proves the frames
    count = count_params(checked).nodes["speech"]
    if model_type == "hubert":
        assert count.value == _built_params(model)
    else:  # no static formula: said so, and counted at build
        assert count.value is None and "no static formula" in count.depends
