"""What can be known about a Hugging Face model offline, without importing torch or transformers.

Widths come from an inline config, a local directory's ``config.json``, or a ``config.json``
already in the local Hugging Face cache. Anything else is *deferred*: reported, never guessed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

WIDTH_KEYS = ("hidden_size", "dim", "d_model", "embed_dim", "n_embd")
POOLER_TYPES = {"bert", "roberta", "xlm-roberta", "camembert", "albert", "ernie", "mpnet", "megatron-bert",
                "nezha", "rembert", "roc_bert", "xmod", "data2vec-text"}


def width_of(config: dict):
    """Hidden width named by a transformers config dict, or ``None``."""
    for key in WIDTH_KEYS:
        v = config.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def _cache_dirs() -> list[Path]:
    from ..hub import hf_cache

    return [hf_cache()]


def is_local_reference(name: str) -> bool:
    """A pretrained reference that names a path rather than a hub model."""
    return name.startswith((".", "/", "~")) or os.sep in name and Path(name).expanduser().exists()


def find_config(name: str, base_dir: Path | None):
    """Locate ``config.json`` for a pretrained reference.

    Returns:
        ``(path or None, where)`` with ``where`` one of ``local``, ``cache``, ``missing-local``,
        ``unknown`` (a hub name not in the local cache).
    """
    if name.startswith((".", "/", "~")):
        p = Path(name).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        cfg = p / "config.json"
        return (cfg, "local") if cfg.is_file() else (p, "missing-local")
    for root in _cache_dirs():
        repo = root / ("models--" + name.replace("/", "--"))
        snaps = repo / "snapshots"
        if snaps.is_dir():
            # the snapshot `main` points at (what transformers loads), else any that has a config
            ref = repo / "refs" / "main"
            main = ref.read_text().strip() if ref.is_file() else ""
            for snap in sorted(snaps.iterdir(), key=lambda s: s.name != main):
                if (snap / "config.json").is_file():
                    return snap / "config.json", "cache"
    return None, "unknown"


def read_config(path: Path):
    """Parse a config.json; ``None`` if unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def known_config(pretrained, inline, base_dir: Path | None):
    """The transformers config known without the network (inline values over a local or cached
    ``config.json``), or ``None``; reports nothing (``infer`` reports what is missing)."""
    cfg = None
    if pretrained:
        path, where = find_config(pretrained, base_dir)
        cfg = read_config(path) if where in ("local", "cache") else None
    if inline:
        cfg = {**(cfg or {}), **inline}
    return cfg
