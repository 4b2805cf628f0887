"""`synthetic_av`: a SYNTHETIC audio + image + caption set for the hybrid fusion with audio.

No PyPI package we found ships real labelled audio clips inside its wheel (docs/data.md), so this
set is generated: every value is drawn from fixed seeds and says nothing about the real world. Each
row is one of three classes (`low`, `mid`, `high`):

- `audio_path`: a 1 s, 8 kHz mono WAV with a tone at the class's pitch (250 / 800 / 2,500 Hz, with
  jitter) buried in noise; a quarter of the clips carry a tone of a random class instead;
- `image_path`: a 28x28 grayscale PNG with a bright horizontal bar at the class's height, with
  noise; a quarter of the images show a random class's bar;
- `caption`: a template sentence whose pitch word names the class in 60% of the rows and a random
  class otherwise.

By construction a modality shows the row's class in about 83% (audio, image) or 73% (caption) of
the rows, and the three are drawn independently: combining them can beat any single one. Files are byte-reproducible (fixed seeds, PCM_16 WAV, PNG without metadata).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ._common import holdout_mask, write_csv, write_png

CLASSES = ("low", "mid", "high")
PITCH = {"low": 250.0, "mid": 800.0, "high": 2500.0}
WORDS = {"low": ("low", "deep", "rumbling"), "mid": ("mid", "medium", "humming"), "high": ("high", "shrill", "whistling")}
RATE = 8000
N = 900


def _wav(path: Path, x: np.ndarray) -> None:
    import soundfile as sf

    sf.write(str(path), np.clip(x, -1, 1), RATE, subtype="PCM_16", format="WAV")


def build_synthetic_av(out: Path) -> list[Path]:
    out = Path(out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20250107)
    rows = []
    for i in range(N):
        label = CLASSES[i % 3]
        heard = label if rng.random() > 0.25 else CLASSES[rng.integers(3)]
        seen = label if rng.random() > 0.25 else CLASSES[rng.integers(3)]
        said = label if rng.random() > 0.4 else CLASSES[rng.integers(3)]
        t = np.arange(RATE) / RATE
        f = PITCH[heard] * (1 + 0.1 * rng.normal())
        wave = 0.3 * np.sin(2 * np.pi * f * t + rng.random() * 6.28) + 0.3 * rng.normal(size=RATE)
        _wav(out / "audio" / f"{i:04d}.wav", wave.astype(np.float32))
        img = rng.normal(40, 25, size=(28, 28))
        y0 = {"low": 20, "mid": 12, "high": 4}[seen] + int(rng.integers(-1, 2))
        img[y0:y0 + 4, 3:25] += 150
        write_png(np.clip(img, 0, 255).astype(np.uint8), out / "images" / f"{i:04d}.png")
        word = WORDS[said][rng.integers(3)]
        caption = f"a {word} {('sound', 'noise', 'tone')[rng.integers(3)]} {('recorded', 'heard', 'captured')[rng.integers(3)]} " \
                  f"{('indoors', 'outside', 'at night', 'nearby')[rng.integers(4)]}"
        rows.append({"audio_path": f"audio/{i:04d}.wav", "image_path": f"images/{i:04d}.png", "caption": caption,
                     "label": label})
    df = pd.DataFrame(rows)
    test = holdout_mask(len(df), 1 / 3, 7)
    files = [write_csv(df[~test], out / "train.csv"), write_csv(df[test], out / "test.csv")]
    readme = out / "README.md"
    readme.write_text(
        "# synthetic_av: SYNTHETIC audio, images and captions\n\n"
        "Written by `archspec data prepare synthetic_av`. **Every value is generated** (fixed seeds): this set "
        "is not real data and says nothing about real recordings. It exists because no PyPI package we found "
        "ships real labelled audio clips inside its wheel (see docs/data.md).\n\n"
        + (__doc__ or "").split("\n\n", 1)[1] + "\n"
        f"- `train.csv`: {int((~test).sum()):,} rows\n- `test.csv`: {int(test.sum()):,} rows\n", encoding="utf-8")
    return files + [readme, out / "audio", out / "images"]
