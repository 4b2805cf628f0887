"""Synthetic data for any spec (tests only): a data file plus tiny PNG images.

``make_dataset(checked, n_rows, dir)`` writes every column the spec reads (inputs and the targets
of every head and late fusion) with values of the right kind, so any spec in ``specs/`` can be
preflighted, preprocessed and trained on it. Deterministic for a given ``seed``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd

from archspec.data.columns import prediction_targets
from archspec.pipeline import load_spec

WORDS = ("good bad great awful fine movie phone battery screen camera fast slow price quality love hate "
         "news sport politics tech match game team vote election chip cloud music video cat dog").split()


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))


def _png(path: Path, rng: random.Random, mode: str = "RGB") -> None:
    from PIL import Image

    size = (8, 8)
    im = Image.new(mode, size)
    if mode == "RGB":
        im.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(64)])
    else:
        im.putdata([rng.randrange(256) for _ in range(64)])
    im.save(path)


def _wav(path: Path, rng: random.Random, rate: int) -> None:
    """A short noisy tone (length and pitch vary, so cropping and padding are both exercised)."""
    import numpy as np
    import soundfile as sf

    n = int(rate * rng.uniform(0.2, 1.5))
    t = np.arange(n) / rate
    x = 0.4 * np.sin(2 * np.pi * rng.uniform(100, 1000) * t) + 0.05 * np.random.default_rng(rng.randrange(1 << 30)).normal(size=n)
    sf.write(str(path), x.astype(np.float32), rate)


def make_frame(checked, n_rows: int, dir, seed: int = 0, list_style: str = "json") -> pd.DataFrame:
    """The synthetic rows as a DataFrame (images written under ``dir/images``).

    Args:
        checked: a checked spec, a path or YAML text.
        n_rows: rows to generate.
        dir: output directory.
        seed: fixes every value.
        list_style: ``json`` to store vectors and label sets as JSON strings (CSV), ``list`` to store
            real lists (Parquet, JSON Lines).
    """
    checked = load_spec(checked)
    spec = checked.spec
    rng = random.Random(seed)
    dir = Path(dir)
    cols: dict[str, list] = {}

    def as_list(values):
        return json.dumps(values) if list_style == "json" else list(values)

    for name, cfg in spec.inputs.items():
        t = cfg.type
        if t == "text":
            cols[cfg.column] = [_text(rng) for _ in range(n_rows)]
        elif t == "image":
            (dir / "images").mkdir(parents=True, exist_ok=True)
            paths = []
            for i in range(n_rows):
                rel = f"images/{name}_{i}.png"
                _png(dir / rel, rng, "RGB" if cfg.channels == 3 else "L")
                paths.append(rel)
            cols[cfg.column] = paths
        elif t == "audio":
            (dir / "audio").mkdir(parents=True, exist_ok=True)
            paths = []
            for i in range(n_rows):
                rel = f"audio/{name}_{i}.wav"
                _wav(dir / rel, rng, cfg.sample_rate)
                paths.append(rel)
            cols[cfg.column] = paths
        elif t == "numeric":
            for c in cfg.columns:
                cols[c] = [round(rng.gauss(0, 1), 4) for _ in range(n_rows)]
        elif t == "categorical":
            pool = list(cfg.categories) if cfg.categories else [f"{cfg.column}_{k}" for k in range(min(8, cfg.max_categories))]
            cols[cfg.column] = [rng.choice(pool) for _ in range(n_rows)]
        elif t == "vector":
            cols[cfg.column] = [as_list([round(rng.gauss(0, 1), 4) for _ in range(cfg.width)]) for _ in range(n_rows)]
        else:
            raise NotImplementedError(f"datagen: no generator for input type {t!r}")

    for tgt in prediction_targets(checked).values():
        if tgt.column in cols:
            continue  # shared by several predictions (late fusions default to their member's column)
        if tgt.kind == "multiclass":
            # every class appears when there are enough rows, so fitted label maps are complete
            names = list(tgt.names) if tgt.names else list(range(tgt.size))
            values = [names[i % len(names)] for i in range(n_rows)]
            rng.shuffle(values)
            cols[tgt.column] = values
        elif tgt.kind == "multilabel":
            names = list(tgt.names) if tgt.names else [str(i) for i in range(tgt.size)]
            sets = [sorted(rng.sample(names, rng.randint(0, min(3, len(names))))) for _ in range(n_rows)]
            sets[0] = names  # every label occurs at least once
            cols[tgt.column] = [as_list(s) for s in sets]
        elif tgt.kind == "binary":
            values = [rng.randint(0, 1) for _ in range(n_rows)]
            values[:2] = [0, 1]
            cols[tgt.column] = values
        elif tgt.kind == "regression":
            if tgt.size == 1:
                cols[tgt.column] = [round(rng.gauss(0, 1), 4) for _ in range(n_rows)]
            else:
                cols[tgt.column] = [as_list([round(rng.gauss(0, 1), 4) for _ in range(tgt.size)])
                                    for _ in range(n_rows)]
    return pd.DataFrame(cols)


def make_dataset(checked, n_rows: int, dir, seed: int = 0, fmt: str = "csv", name: str = "train") -> Path:
    """Write synthetic data for ``checked`` to ``dir/<name>.<fmt>`` (and PNGs to ``dir/images``).

    Args:
        checked: a checked spec, a path or YAML text.
        n_rows: rows to generate.
        dir: output directory (created).
        seed: fixes every value.
        fmt: ``csv``, ``parquet`` or ``jsonl``.
        name: file stem.

    Returns:
        the data file's path; image paths in it are relative to its directory.
    """
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    df = make_frame(checked, n_rows, dir, seed, list_style="json" if fmt == "csv" else "list")
    path = dir / f"{name}.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        df.to_parquet(path, index=False)
    elif fmt == "jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return path
