"""Helpers shared by the data set builders: seeded splits, byte-stable CSV/PNG writing, READMEs."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.tables import permutation

#: the seed of every split and sampling step in this package (the split is part of the data set)
SEED = 20250106


def holdout_mask(n: int, test_fraction: float, *key: int) -> np.ndarray:
    """A boolean mask of the ``round(n * test_fraction)`` rows held out for test, fixed by ``key``.

    Example:
        >>> m = holdout_mask(10, 0.2, 1)
        >>> int(m.sum()), bool((m == holdout_mask(10, 0.2, 1)).all())
        (2, True)
    """
    n_test = int(round(n * test_fraction))
    mask = np.zeros(n, dtype=bool)
    mask[permutation(n, SEED, *key)[:n_test]] = True
    return mask


def stratified_holdout_mask(labels, test_fraction: float, *key: int) -> np.ndarray:
    """Like :func:`holdout_mask`, but holding out the same share of every label value."""
    labels = np.asarray(labels)
    mask = np.zeros(len(labels), dtype=bool)
    for j, value in enumerate(sorted(set(labels.tolist()))):
        idx = np.flatnonzero(labels == value)
        mask[idx[holdout_mask(len(idx), test_fraction, *key, j)]] = True
    return mask


def shuffled(n: int, *key: int) -> np.ndarray:
    """A seeded permutation of ``range(n)`` (platform independent)."""
    return permutation(n, SEED, *key)


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """Write a CSV whose bytes depend only on the frame (``\\n`` line ends, no index)."""
    df.to_csv(path, index=False, lineterminator="\n")
    return path


def write_png(pixels: np.ndarray, path: Path) -> None:
    """A grayscale PNG from a ``(H, W)`` uint8 array (no metadata, so the bytes are stable)."""
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), mode="L").save(path, format="PNG", optimize=False)


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def write_readme(out: Path, name: str, title: str, sources, how: str, columns: dict, split: str,
                 counts: dict) -> Path:
    """``README.md`` of a prepared data set: origin, licences, construction, columns and split."""
    lines = [f"# {name}: {title}", "",
             "Written by `archspec data prepare " + name + "` from data shipped inside these PyPI packages "
             "(nothing was downloaded):", ""]
    for s in sources:
        lines += [f"- **{s.package}** {version(s.package)} (package licence {s.package_licence}): {s.data}. "
                  f"Data licence: {s.data_licence}."]
    lines += ["", "## How it was built", "", how.strip(), "", "## Split", "", split.strip(), ""]
    lines += [f"- `{f}`: {n:,} rows" for f, n in counts.items()]
    lines += ["", "## Columns", "", "| column | meaning |", "|---|---|"]
    lines += [f"| `{c}` | {m} |" for c, m in columns.items()]
    lines += ["", "See docs/data.md in the archspec repository for every data set.", ""]
    path = out / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def hashed_ints(n: int, modulo: int, *key: int) -> np.ndarray:
    """``n`` pseudo-random integers in ``[0, modulo)`` fixed by ``key`` (platform independent).

    Example:
        >>> a = hashed_ints(5, 10, 3)
        >>> bool(((a >= 0) & (a < 10)).all()), bool((a == hashed_ints(5, 10, 3)).all())
        (True, True)
    """
    from ..data.tables import _mix

    h = np.zeros(1, dtype=np.uint64)
    for k in (SEED, *key):
        h = _mix(h ^ np.uint64(int(k) & ((1 << 64) - 1)))
    return (_mix(np.arange(n, dtype=np.uint64) ^ h) % np.uint64(modulo)).astype(np.int64)
