"""A Hugging Face audio model behind a `transformer` encoder: feature extractor, model, pooling over frames.

Where the feature extractor runs: **inside the module**, for both families
(:mod:`archspec.spec.hf_audio`), on the waveform the `audio` input gives. The reasons:

- An `audio` input is one node that several encoders may read (a `log_mel` front end and a
  wav2vec2 side by side): its data transform gives the decoded waveform, whatever reads it. A
  feature extractor in the data path would make the input's transform depend on its readers.
- One path for train, evaluate, predict, export and the torch-free runtime: an export of the
  model reads the same decoded waveform as a `log_mel` model does (:mod:`archspec.serving`
  decodes it), so nothing of transformers is needed to serve it.
- The work is tensor math: wav2vec2's zero-mean/unit-variance normalisation is a few reductions;
  AST's filter banks are ``torchaudio.compliance.kaldi.fbank``, the very function
  ``ASTFeatureExtractor`` calls when torchaudio is installed (a test checks that both extractors
  give the transformers extractor's ``input_values``).

The cost: the filter banks of an AST are computed in the training process (one call per clip,
no gradient), not in the loader's worker processes; decoding and resampling, the expensive part
of reading audio, stay in the workers.

Padding: every clip is cropped or zero-padded to the input's ``duration``. For models whose
extractor returns an attention mask (``return_attention_mask: true``, e.g. wav2vec2 models with
``feat_extract_norm: layer``), the trailing zeros of a clip are taken as padding: normalisation,
attention and the pooling skip them (a recording that ends in exact digital silence loses that
silence too, which carries nothing). Models trained without a mask (wav2vec2-base, hubert-base,
AST) see the zero-padded clip as transformers would feed it.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from ..errors import BuildError
from .layers import pool_output


def _valid_mask(wave: torch.Tensor) -> torch.Tensor:
    """``(B, S)`` long mask: 1 up to the last non-zero sample of each clip (at least one sample)."""
    pos = torch.arange(1, wave.shape[1] + 1, device=wave.device).unsqueeze(0)  # (1, S)
    length = (pos * (wave != 0)).amax(dim=1, keepdim=True).clamp_min(1)  # (B, 1)
    return (pos <= length).long()


class WaveformExtractor(nn.Module):
    """``Wav2Vec2FeatureExtractor`` as tensor math: per-clip zero mean, unit variance (``var + 1e-7``)."""

    def __init__(self, do_normalize: bool, use_mask: bool):
        super().__init__()
        self.do_normalize = do_normalize
        self.use_mask = use_mask

    def forward(self, wave: torch.Tensor):  # (B, S) -> (B, S), (B, S) mask or None
        x = wave.float()
        mask = _valid_mask(x) if self.use_mask else None
        if self.do_normalize:
            if mask is None:
                x = (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-7)
            else:
                m = mask.to(x.dtype)
                n = m.sum(1, keepdim=True)
                mean = (x * m).sum(1, keepdim=True) / n
                var = (((x - mean) * m) ** 2).sum(1, keepdim=True) / n
                x = (x - mean) / torch.sqrt(var + 1e-7) * m  # padding stays at the padding value 0
        return x, mask


class FbankExtractor(nn.Module):
    """``ASTFeatureExtractor``: Kaldi filter banks (hanning window, 25 ms every 10 ms), padded or cropped
    to ``max_length`` frames, normalised with the dataset ``mean`` and ``std`` (``(x - mean) / (2 std)``).

    ``torchaudio.compliance.kaldi.fbank`` (what the transformers extractor calls) takes one clip at a
    time; this is the same computation for a batch, in plain tensor operations (so it exports), with
    its mel filter bank from torchaudio as a buffer. A test checks it against the transformers extractor.
    """

    def __init__(self, sample_rate: int, num_mel_bins: int, max_length: int, do_normalize: bool,
                 mean: float, std: float):
        super().__init__()
        from torchaudio.compliance import kaldi

        self.window_size, self.shift = int(sample_rate * 0.025), int(sample_rate * 0.010)
        self.padded = 1 << (self.window_size - 1).bit_length()  # round_to_power_of_two
        self.max_length, self.num_mel_bins = max_length, num_mel_bins
        self.do_normalize, self.mean, self.std = do_normalize, float(mean), float(std)
        with torch.device("cpu"):
            banks, _ = kaldi.get_mel_banks(num_mel_bins, self.padded, float(sample_rate), 20.0, 0.0,
                                           100.0, -500.0, 1.0)  # (num_mel_bins, padded // 2)
            banks = torch.nn.functional.pad(banks, (0, 1))  # the Nyquist bin gets no weight
            window = torch.hann_window(self.window_size, periodic=False, dtype=torch.float64).float()
        self.register_buffer("banks", banks.float().t().contiguous(), persistent=False)  # (bins, mels)
        self.register_buffer("window", window, persistent=False)

    def forward(self, wave: torch.Tensor):  # (B, S) -> (B, max_length, num_mel_bins), None
        frames = wave.float().unfold(1, self.window_size, self.shift)  # (B, F, W), snip_edges
        frames = frames - frames.mean(-1, keepdim=True)  # remove_dc_offset
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        frames = (frames - 0.97 * previous) * self.window  # pre-emphasis, then the window
        frames = torch.nn.functional.pad(frames, (0, self.padded - self.window_size))
        power = torch.fft.rfft(frames).abs().pow(2)  # (B, F, padded // 2 + 1)
        mel = torch.matmul(power, self.banks)  # (B, F, num_mel_bins)
        x = torch.log(torch.clamp_min(mel, torch.finfo(torch.float32).eps))
        n = x.shape[1]
        if n < self.max_length:
            x = torch.nn.functional.pad(x, (0, 0, 0, self.max_length - n))
        x = x[:, : self.max_length]
        if self.do_normalize:
            x = (x - self.mean) / (self.std * 2)
        return x, None


class HFAudioEncoder(nn.Module):
    """Waveform ``(B, samples)`` → feature extractor → transformers audio model → pooled ``(B, D)``
    (or the frames ``(B, T, D)`` with ``pooling: none``)."""

    def __init__(self, extractor: nn.Module, model: nn.Module, pooling: str):
        super().__init__()
        self.extractor = extractor
        self.model = model
        self.pooling = pooling

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x, mask = self.extractor(wave)
        out = self.model(input_values=x, attention_mask=mask) if mask is not None else self.model(input_values=x)
        # the sample mask as a (B, T) mask of the model's frames
        frames = None if mask is None else (lambda t: self.model._get_feature_vector_attention_mask(t, mask))
        return pool_output(out, self.pooling, frames)


def feature_extractor(cfg, model_config, ref: str | None, sample_rate: int, ctx, load_kw: dict):
    """The transformers feature extractor of an audio encoder: the pretrained model's (or the one a run
    saved), else the transformers default of the model family at the input's sample rate."""
    from transformers import ASTFeatureExtractor, AutoFeatureExtractor, Wav2Vec2FeatureExtractor

    from ..spec.hf_audio import family

    saved = ctx.saved_config() if hasattr(ctx, "saved_config") else None
    if family(model_config.model_type) == "spectrogram":  # filter banks of the size the model reads
        default = functools.partial(ASTFeatureExtractor, num_mel_bins=model_config.num_mel_bins,
                                    max_length=model_config.max_length)
    else:
        default = Wav2Vec2FeatureExtractor
    source = str(saved) if saved is not None and (saved / "preprocessor_config.json").is_file() else ref
    if source is not None:
        from pathlib import Path

        from .. import hub

        local = Path(source)
        if local.is_dir() and not (local / "preprocessor_config.json").is_file():
            fe = default()  # a local model saved without its extractor: the family's default (16 kHz)
        else:
            try:
                fe = AutoFeatureExtractor.from_pretrained(source, **load_kw)
            except (OSError, ValueError) as exc:
                why = hub.load_failure(source, exc) if hub.is_hub_name(source) else str(exc).splitlines()[0]
                raise BuildError(f"cannot load the feature extractor of '{source}': {why}") from None
        if not isinstance(fe, (Wav2Vec2FeatureExtractor, ASTFeatureExtractor)):  # noqa: SIM102
            raise BuildError(f"'{ref}' has a {type(fe).__name__}; archspec feeds audio models through "
                             "Wav2Vec2FeatureExtractor or ASTFeatureExtractor")
        return fe
    return default(sampling_rate=sample_rate)


def wrap_audio(cfg, model: nn.Module, ref: str | None, ctx, load_kw: dict) -> HFAudioEncoder:
    """The audio encoder module around a built transformers ``model``.

    Raises:
        BuildError: not an audio model archspec can feed, or the input's sample rate differs from the
            feature extractor's.
    """
    from ..spec.hf_audio import AUDIO_TYPES, family, pooling_of

    mtype = model.config.model_type
    if mtype not in AUDIO_TYPES:
        raise BuildError(f"model type '{mtype}' is not an audio model archspec can feed a waveform — use "
                         f"one of {', '.join(AUDIO_TYPES)}")
    node = ctx.node(cfg.input)
    rate = node.sample_rate
    fe = feature_extractor(cfg, model.config, ref, rate, ctx, load_kw)
    if fe.sampling_rate != rate:
        raise BuildError(f"input '{cfg.input}' is resampled to {rate} Hz, but '{ref}' was trained on "
                         f"{fe.sampling_rate} Hz audio (its feature extractor) — set `sample_rate: "
                         f"{fe.sampling_rate}` on input '{cfg.input}'")
    if family(mtype) == "spectrogram":
        if (fe.max_length, fe.num_mel_bins) != (model.config.max_length, model.config.num_mel_bins):
            raise BuildError(f"the feature extractor gives {fe.max_length} × {fe.num_mel_bins} filter banks, "
                             f"the model reads {model.config.max_length} × {model.config.num_mel_bins}")
        extractor = FbankExtractor(rate, fe.num_mel_bins, fe.max_length, fe.do_normalize, fe.mean, fe.std)
    else:
        extractor = WaveformExtractor(fe.do_normalize, bool(fe.return_attention_mask))
    enc = HFAudioEncoder(extractor, model, pooling_of(cfg, mtype))
    enc.feature_extractor = fe  # saved beside the config by a run (RUN/pretrained/<node>/)
    return enc
