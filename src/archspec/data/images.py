"""Images from file paths: checked by a header read before training, decoded per batch (torch-free).

The pre-flight opens each file and runs Pillow's ``verify()`` (format, size, chunk checksums for
PNG) without decoding pixels; decoding and resizing happen per batch, in data loader workers. JPEG
files are decoded at a reduced scale when the target size allows (Pillow's ``draft``: the DCT
scales by 1/2, 1/4 or 1/8 before any pixel is produced), which is most of the cost of a large photo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .convert import is_missing
from .problems import Problem

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Grayscale: the luminance-weighted ImageNet statistics (torchvision's convention for 1 channel).
IMAGENET_MEAN_GRAY = (0.449,)
IMAGENET_STD_GRAY = (0.226,)


def resolve(value, data_dir) -> Path:
    """An image path from a cell: absolute, or relative to the data file's directory."""
    p = Path(str(value).strip()).expanduser()
    return p if p.is_absolute() or data_dir is None else Path(data_dir) / p


def _open(path: Path, mode: str, size: tuple[int, int]):
    """Decode ``path`` as ``mode``, at the smallest JPEG scale still at least ``size`` (w, h)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.format == "JPEG":
            im.draft(mode, size)
        im.load()
        return im.convert(mode) if im.mode != mode else im.copy()


def check_images(series: pd.Series, column: str, data_dir, node: str) -> list[Problem]:
    """A problem for every missing or unreadable image (a header check per distinct path; nothing decoded)."""
    seen: dict = {}
    problems = []
    for row, value in series.items():
        if is_missing(value) or not str(value).strip():
            problems.append(Problem("image", "missing image path", f"give the image file for {node}, or drop "
                                    "the row", row, column))
            continue
        path = resolve(value, data_dir)
        if path not in seen:
            seen[path] = _why_unreadable(path)
        why = seen[path]
        if why:
            problems.append(Problem("image", f"{why}: {path}", "paths are relative to the data file's "
                                    "directory; replace the file or drop the row", row, column))
    return problems


def _why_unreadable(path: Path) -> str:
    if not path.is_file():
        return "image not found"
    try:
        from PIL import Image

        with Image.open(path) as im:
            im.verify()  # header and structure only: no pixel is decoded
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"unreadable or truncated image ({detail})"
    return ""


def load_images(series: pd.Series, column: str, data_dir, size, channels: int, normalize: str,
                node: str) -> tuple[np.ndarray, list[Problem]]:
    """``(n, channels, height, width)`` float32 pixels, resized and normalised.

    Args:
        series: image paths.
        column: column name, for problems.
        data_dir: directory relative paths start from.
        size: ``[height, width]``.
        channels: 3 (RGB) or 1 (grayscale).
        normalize: ``none`` (0…255), ``unit`` (0…1) or ``imagenet`` (unit, then ImageNet mean/std).
        node: ``inputs.NAME``, for problems.
    """
    from PIL import Image

    h, w = int(size[0]), int(size[1])
    out = np.zeros((len(series), channels, h, w), dtype=np.float32)
    mode = "RGB" if channels == 3 else "L"
    cache: dict = {}
    problems = []
    for i, (row, value) in enumerate(series.items()):
        if is_missing(value) or not str(value).strip():
            problems.append(Problem("image", "missing image path", f"give the image file for {node}", row, column))
            continue
        path = resolve(value, data_dir)
        if path not in cache:
            try:
                im = _open(path, mode, (w, h)).resize((w, h), Image.Resampling.BILINEAR)
            except Exception as exc:  # see check_images
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                why = "image not found" if not path.is_file() else f"unreadable or truncated image ({detail})"
                problems.append(Problem("image", f"{why}: {path}", "replace the file or drop the row", row, column))
                continue
            px = np.asarray(im, dtype=np.float32).reshape(h, w, channels).transpose(2, 0, 1)  # (C, H, W)
            if normalize != "none":
                px = px / 255.0
            if normalize == "imagenet":
                mean = np.asarray(IMAGENET_MEAN if channels == 3 else IMAGENET_MEAN_GRAY, np.float32)
                std = np.asarray(IMAGENET_STD if channels == 3 else IMAGENET_STD_GRAY, np.float32)
                px = (px - mean[:, None, None]) / std[:, None, None]
            cache[path] = px
        out[i] = cache[path]
    return out, problems
