"""Torch builder of the `log_mel` audio front end (torchaudio's MelSpectrogram)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import BuildError
from ..registry import register_builder


class LogMel(nn.Module):
    """Waveform `(B, samples)` → log-mel spectrogram `(B, 1, n_mels, frames)` (no trainable parameters)."""

    def __init__(self, mel: nn.Module, normalize: str):
        super().__init__()
        self.mel = mel
        self.normalize = normalize

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = torch.log(self.mel(wave.float()) + 1e-6)  # (B, n_mels, frames)
        if self.normalize == "instance":
            mean = x.mean(dim=(1, 2), keepdim=True)
            std = x.std(dim=(1, 2), keepdim=True)
            x = (x - mean) / (std + 1e-5)
        return x.unsqueeze(1)


@register_builder("encoder", "log_mel")
def build_log_mel(cfg, in_shapes, ctx) -> nn.Module:
    try:
        from torchaudio.transforms import MelSpectrogram
    except ImportError:
        raise BuildError("the log_mel encoder needs torchaudio: pip install 'archspec[audio]'") from None
    rate = ctx.node(cfg.input).sample_rate if hasattr(ctx.node(cfg.input), "sample_rate") else 16_000
    with torch.device("cpu"):  # the filterbank is computed eagerly (even when a caller builds on "meta")
        mel = MelSpectrogram(sample_rate=rate, n_fft=cfg.n_fft, win_length=cfg.win_length,
                             hop_length=cfg.hop_length, f_min=cfg.f_min, f_max=cfg.f_max, n_mels=cfg.n_mels,
                             center=True, power=2.0)
    return LogMel(mel, cfg.normalize)
