"""Audio: an `audio` input (sound files named in a column) and a `log_mel` spectrogram front end (torch-free)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ..registry import register_config
from ..shapes import AUDIO, IMAGE, Shape
from .base import Name, PositiveFloat, PositiveInt
from .encoders import EncoderNode
from .inputs import InputNode


@register_config("input", "audio")
class AudioInputConfig(InputNode):
    """Sound files (WAV, FLAC, OGG; paths relative to the data file) as a mono float32 waveform
    `(B, sample_rate × duration)`: decoded with `soundfile`, channels averaged, resampled to
    `sample_rate`, then cropped or zero-padded to `duration` seconds."""

    type: Literal["audio"]
    column: Name
    """Data column holding the file paths."""
    sample_rate: Annotated[int, Field(ge=1000, le=192_000, strict=True)] = 16_000
    """Samples per second after resampling."""
    duration: Annotated[float, Field(gt=0, le=600, allow_inf_nan=False)] = 1.0
    """Seconds per example: longer recordings are cropped, shorter ones zero-padded."""
    crop: Literal["start", "center"] = "start"
    """Which part of a longer recording is kept."""

    @property
    def samples(self) -> int:
        return int(round(self.sample_rate * self.duration))

    def infer(self, ins, ctx) -> Shape:
        return Shape(AUDIO, (self.samples,))


@register_config("encoder", "log_mel")
class LogMelEncoderConfig(EncoderNode):
    """Log-mel spectrogram of a waveform (torchaudio), as a one-channel image `(B, 1, n_mels, frames)`
    for an image encoder (e.g. a `cnn`) to read; `frames = samples // hop_length + 1`."""

    type: Literal["log_mel"]
    n_mels: Annotated[int, Field(ge=4, le=512, strict=True)] = 64
    """Mel bands."""
    n_fft: Annotated[int, Field(ge=16, le=16_384, strict=True)] = 400
    """FFT size (samples)."""
    win_length: PositiveInt | None = None
    """Window length in samples (default `n_fft`)."""
    hop_length: PositiveInt = 160
    """Samples between frames."""
    f_min: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    """Lowest mel band edge (Hz)."""
    f_max: PositiveFloat | None = None
    """Highest mel band edge (Hz; default half the sample rate)."""
    normalize: Literal["none", "instance"] = "instance"
    """`instance`: zero mean and unit variance per example (robust to recording level)."""
    accepts = frozenset({AUDIO})

    @model_validator(mode="after")
    def _window(self):
        if self.win_length is not None and self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} is longer than n_fft {self.n_fft}")
        return self

    def static_params(self, in_shapes) -> int:
        return 0  # a fixed transform (its mel filterbank is a buffer, not a parameter)

    def infer(self, ins, ctx) -> Shape:
        samples = ins[0].dims[0]
        graph = getattr(ctx, "graph", None)  # absent when a component is checked on its own
        src = graph.nodes.get(self.input) if graph is not None else None
        rate = getattr(src, "sample_rate", None)
        if samples is not None and samples < self.n_fft // 2 + 1:
            ctx.report("E-SHAPE", ("n_fft",), f"n_fft {self.n_fft} needs at least {self.n_fft // 2 + 1} samples, but "
                       f"'{self.input}' gives {samples}", "lower n_fft or raise the input's duration")
        if rate is not None and self.f_max is not None and self.f_max > rate / 2:
            ctx.report("E-SCHEMA-VALUE", ("f_max",), f"f_max {self.f_max:g} Hz is above the Nyquist frequency "
                       f"{rate / 2:g} Hz of '{self.input}'", f"use at most {rate / 2:g}")
        frames = None if samples is None else samples // self.hop_length + 1
        return Shape(IMAGE, (1, self.n_mels, frames))
