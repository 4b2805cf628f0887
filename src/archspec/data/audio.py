"""Audio from file paths: checked by a header read before training, decoded per batch (torch-free).

The pre-flight reads each file's header with ``soundfile.info`` (format, channels, rate, frames)
without decoding samples; decoding, down-mixing to mono, resampling (``scipy.signal.resample_poly``,
a polyphase filter) and cropping/padding happen per batch, in the data loader's worker processes.
"""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import pandas as pd

from .convert import is_missing
from .images import resolve
from .problems import Problem


def _soundfile():
    try:
        import soundfile
    except ImportError:
        from ..errors import DataError

        raise DataError("audio inputs need soundfile: pip install 'archspec[audio]'") from None
    return soundfile


def _why_unreadable(path: Path) -> str:
    if not path.is_file():
        return "audio file not found"
    sf = _soundfile()
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError on bad files
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"unreadable audio file ({detail})"
    if info.frames <= 0:
        return "empty audio file (0 samples)"
    return ""


def check_audio(series: pd.Series, column: str, data_dir, node: str) -> list[Problem]:
    """A problem for every missing or unreadable sound file (a header read per distinct path)."""
    seen: dict = {}
    problems = []
    for row, value in series.items():
        if is_missing(value) or not str(value).strip():
            problems.append(Problem("audio", "missing audio path", f"give the sound file for {node}, or drop the row",
                                    row, column))
            continue
        path = resolve(value, data_dir)
        if path not in seen:
            seen[path] = _why_unreadable(path)
        if seen[path]:
            problems.append(Problem("audio", f"{seen[path]}: {path}", "paths are relative to the data file's "
                                    "directory; WAV, FLAC and OGG are read; replace the file or drop the row",
                                    row, column))
    return problems


def decode(path: Path, sample_rate: int, samples: int, crop: str = "start") -> np.ndarray:
    """One file as a mono float32 waveform of exactly ``samples`` samples at ``sample_rate``."""
    sf = _soundfile()
    x, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (frames, channels)
    x = x.mean(axis=1)
    if rate != sample_rate:
        from scipy.signal import resample_poly

        g = gcd(int(rate), int(sample_rate))
        x = resample_poly(x, sample_rate // g, int(rate) // g).astype(np.float32)
    if len(x) > samples:
        start = (len(x) - samples) // 2 if crop == "center" else 0
        x = x[start:start + samples]
    elif len(x) < samples:
        x = np.pad(x, (0, samples - len(x)))
    return x


def load_audio(series: pd.Series, column: str, data_dir, sample_rate: int, samples: int, crop: str,
               node: str) -> tuple[np.ndarray, list[Problem]]:
    """``(n, samples)`` float32 waveforms and the problems of rows that could not be read."""
    out = np.zeros((len(series), samples), dtype=np.float32)
    problems = []
    for i, (row, value) in enumerate(series.items()):
        if is_missing(value) or not str(value).strip():
            problems.append(Problem("audio", "missing audio path", f"give the sound file for {node}", row, column))
            continue
        path = resolve(value, data_dir)
        try:
            out[i] = decode(path, sample_rate, samples, crop)
        except Exception as exc:  # see _why_unreadable
            why = _why_unreadable(path) or f"unreadable audio file ({type(exc).__name__}: {exc})"
            problems.append(Problem("audio", f"{why}: {path}", "replace the file or drop the row", row, column))
    return out, problems
