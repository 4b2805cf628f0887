"""Pretrained Hugging Face audio models behind a `transformer` encoder, known without torch.

A `transformer` encoder that reads an `audio` input runs a transformers *audio* model on the
input's waveform ``(B, samples)``: the model's feature extractor first, then the model, then the
pooling over time frames. What can be known before build is worked out here from the model's
``config.json`` and ``preprocessor_config.json`` (local directory, Hugging Face cache or inline
``config``): the output width, the number of frames (for ``pooling: none``), whether the input's
``sample_rate`` matches the one the model was trained at, and the parameter count.

Two families are supported:

- *waveform* models (``wav2vec2``, ``hubert``, ``wavlm``, ``data2vec-audio``): a stack of 1-d
  convolutions reads the raw samples; the feature extractor (``Wav2Vec2FeatureExtractor``)
  normalises each clip to zero mean and unit variance. Frames: ``L ← (L - kernel) // stride + 1``
  per conv layer (``conv_kernel``/``conv_stride``). They have no CLS token, so the pooling
  defaults to ``mean``.
- *spectrogram* models (``audio-spectrogram-transformer``, AST): the feature extractor
  (``ASTFeatureExtractor``) computes Kaldi log-mel filter banks (25 ms windows every 10 ms),
  pads/crops them to ``max_length`` frames and normalises them with the AudioSet mean and std;
  the model cuts the ``(max_length, num_mel_bins)`` image into 16×16 patches. Positions:
  ``f × t + 2`` (a CLS and a distillation token), ``f = (num_mel_bins - patch_size) //
  frequency_stride + 1``, ``t = (max_length - patch_size) // time_stride + 1``.
"""

from __future__ import annotations

from pathlib import Path

from ..shapes import FEATURES, SEQUENCE, Shape
from . import hf, hf_fields

#: model types that read the raw waveform through a conv feature encoder (Wav2Vec2FeatureExtractor)
WAVEFORM_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")
#: model types that read Kaldi filter banks (ASTFeatureExtractor)
SPECTROGRAM_TYPES = ("audio-spectrogram-transformer",)
AUDIO_TYPES = WAVEFORM_TYPES + SPECTROGRAM_TYPES

#: the feature extractor a config-only model gets (the transformers class defaults)
EXTRACTOR_DEFAULTS = {
    "waveform": {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "sampling_rate": 16000,
                 "do_normalize": True, "return_attention_mask": False, "padding_value": 0.0},
    "spectrogram": {"feature_extractor_type": "ASTFeatureExtractor", "sampling_rate": 16000,
                    "num_mel_bins": 128, "max_length": 1024, "do_normalize": True, "mean": -4.2677393,
                    "std": 4.5689974, "padding_value": 0.0},
}


def family(model_type) -> str | None:
    """``waveform``, ``spectrogram``, or ``None`` (not an audio model archspec can feed)."""
    if model_type in WAVEFORM_TYPES:
        return "waveform"
    if model_type in SPECTROGRAM_TYPES:
        return "spectrogram"
    return None


def read_extractor(pretrained: str | None, base_dir: Path | None) -> dict | None:
    """The ``preprocessor_config.json`` beside a pretrained model's config (local or cached), or ``None``."""
    if not pretrained:
        return None
    path, where = hf.find_config(pretrained, base_dir)
    if where not in ("local", "cache"):
        return None
    return hf.read_config(Path(path).parent / "preprocessor_config.json")


def extractor_settings(model_type: str, saved: dict | None, sample_rate: int | None, conf: dict | None = None) -> dict:
    """The feature extractor's settings: the saved ones over the defaults of the model family.

    A config-only (untrained) model has nothing to match, so it takes the input's sample rate (and,
    for an AST, the filter-bank size its config reads).
    """
    base = dict(EXTRACTOR_DEFAULTS[family(model_type)])
    if family(model_type) == "spectrogram" and conf:
        base.update({k: conf[k] for k in ("num_mel_bins", "max_length") if isinstance(conf.get(k), int)})
    if saved:
        base.update({k: v for k, v in saved.items() if k in base or k == "return_attention_mask"})
    elif sample_rate is not None:
        base["sampling_rate"] = sample_rate
    return base


def _ints(v) -> list[int] | None:
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v):
        return list(v)
    return None


def _int(d: dict, key: str):
    v = d.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def waveform_frames(conf: dict, samples: int | None) -> int | None:
    """Frames a waveform model gives for ``samples`` samples (``None`` when unknown); may be ≤ 0."""
    kernels, strides = _ints(conf.get("conv_kernel")), _ints(conf.get("conv_stride"))
    if samples is None or kernels is None or strides is None or len(kernels) != len(strides):
        return None
    n = samples
    for k, s in zip(kernels, strides):
        n = (n - k) // s + 1 if n >= k else 0
    if conf.get("add_adapter"):
        k, s, layers = _int(conf, "adapter_kernel_size"), _int(conf, "adapter_stride"), _int(conf, "num_adapter_layers")
        if None in (k, s, layers) or s < 1:
            return None
        for _ in range(layers):
            n = (n + 2 - k) // s + 1 if n + 2 >= k else 0  # Conv1d(padding=1)
    return n


def spectrogram_patches(conf: dict) -> int | None:
    """Positions an AST gives: its patches plus the CLS and distillation tokens."""
    p, mel, frames = _int(conf, "patch_size"), _int(conf, "num_mel_bins"), _int(conf, "max_length")
    fs, ts = _int(conf, "frequency_stride"), _int(conf, "time_stride")
    if None in (p, mel, frames, fs, ts) or min(fs, ts) <= 0:
        return None
    return ((mel - p) // fs + 1) * ((frames - p) // ts + 1) + 2


def fbank_frames(samples: int, sample_rate: int) -> int:
    """Kaldi filter-bank frames of a waveform (25 ms windows every 10 ms, ``snip_edges``)."""
    window, shift = int(sample_rate * 0.025), int(sample_rate * 0.010)
    return 0 if samples < window else 1 + (samples - window) // shift


def pooling_of(enc, model_type) -> str:
    """The pooling an audio encoder uses: as written, else ``mean`` for waveform models (no CLS token)."""
    if "pooling" not in enc.model_fields_set and family(model_type) == "waveform":
        return "mean"
    return enc.pooling


def infer_audio(enc, cfg: dict | None, where: str, ins, ctx) -> Shape:
    """Shape of a `transformer` encoder over an `audio` input; reports what is wrong on the spec."""
    samples = ins[0].dims[0] if ins and ins[0].dims else None
    graph = getattr(ctx, "graph", None)
    src = graph.nodes.get(enc.input) if graph is not None else None
    rate = getattr(src, "sample_rate", None)
    mtype = (cfg or {}).get("model_type")
    defaults = {**hf_fields.defaults(mtype), **(cfg or {})} if isinstance(mtype, str) else (cfg or {})
    width = hf.width_of(defaults) if cfg is not None else None
    kind = family(mtype) if isinstance(mtype, str) else None
    if isinstance(mtype, str) and kind is None:
        ctx.report("E-MODALITY", ("input",), f"'{enc.input}' gives audio waveforms, but model type '{mtype}' "
                   "is not an audio model archspec can feed a waveform",
                   f"use an audio model ({', '.join(AUDIO_TYPES)}), or read a `text` input")
        return Shape(FEATURES, (width,))
    pooling = pooling_of(enc, mtype)
    if kind == "waveform" and pooling in ("cls", "pooler"):
        ctx.report("E-POOLING", ("pooling",), f"model type '{mtype}' has no {pooling} token or pooler output: "
                   "it gives one vector per time frame", "use `pooling: mean` (the default for audio models) "
                   "or `max`, or `none` to keep the frames")
    if kind is not None and rate is not None and enc.pretrained:
        saved = read_extractor(enc.pretrained, getattr(ctx, "base_dir", None))
        local = where == "local"
        if saved is not None or local:  # a local model without the file gets the family default at build
            want = extractor_settings(mtype, saved, None)["sampling_rate"]
            whence = "its preprocessor_config.json" if saved is not None else \
                "the transformers default: its directory has no preprocessor_config.json"
            if isinstance(want, int) and want != rate:
                at = ctx.at(()) if hasattr(ctx, "at") and graph is not None else ctx
                path = graph.path(enc.input) + ("sample_rate",) if graph is not None else ("input",)
                at.report("E-SAMPLE-RATE", path, f"input '{enc.input}' is resampled to {rate} Hz, but "
                          f"'{enc.pretrained}' was trained on {want} Hz audio ({whence})",
                          f"set `sample_rate: {want}` on input '{enc.input}' (recordings are resampled on loading)")
    if kind == "waveform" and cfg is not None:
        if defaults.get("add_adapter"):
            width = _int(defaults, "output_hidden_size") or width
        frames = waveform_frames(defaults, samples)
        if frames is not None and frames < 1:
            ctx.report("E-SHAPE", ("input",), f"'{enc.input}' gives {samples} samples, too few for the model's "
                       f"convolutions (kernels {defaults.get('conv_kernel')}, strides {defaults.get('conv_stride')})",
                       "raise the input's `duration`")
        span = _int(defaults, "mask_time_length")
        if (frames is not None and frames >= 1 and span is not None and defaults.get("apply_spec_augment", True)
                and (defaults.get("mask_time_prob") or 0) > 0 and span > frames):
            ctx.report("E-SHAPE", ("input",), f"SpecAugment masks spans of {span} frames (mask_time_length), but "
                       f"'{enc.input}' gives only {frames} frames: training would fail",
                       "raise the input's `duration`, or set `mask_time_prob: 0` in the encoder's `config`")
    elif kind == "spectrogram" and cfg is not None:
        frames = spectrogram_patches(defaults)
        ext = extractor_settings(mtype, read_extractor(enc.pretrained, getattr(ctx, "base_dir", None)), rate, defaults)
        mel, length = defaults.get("num_mel_bins"), defaults.get("max_length")
        if (ext.get("num_mel_bins"), ext.get("max_length")) != (mel, length) and enc.pretrained:
            ctx.report("E-SHAPE", ("pretrained",), f"the feature extractor gives {ext.get('max_length')} frames × "
                       f"{ext.get('num_mel_bins')} mel bins, but the model reads {length} × {mel}",
                       "make preprocessor_config.json's max_length/num_mel_bins match config.json")
        patch = defaults.get("patch_size")
        for key, value in (("num_mel_bins", mel), ("max_length", length)):
            if isinstance(value, int) and isinstance(patch, int) and value < patch:
                ctx.report("E-SHAPE", ("config",), f"{key} {value} is smaller than the patch size {patch}",
                           f"raise {key} or lower patch_size")
        if samples is not None and rate is not None and fbank_frames(samples, rate) < 1:
            ctx.report("E-SHAPE", ("input",), f"'{enc.input}' gives {samples} samples, shorter than one 25 ms "
                       "filter-bank window", "raise the input's `duration`")
    else:
        frames = None
    if pooling == "none":
        return Shape(SEQUENCE, (frames, width))
    return Shape(FEATURES, (width,))
