"""Crash-safe checkpoints: safetensors weights, trainer state without pickle, atomic pointers.

Layout of ``RUN/checkpoints/``::

    step-000120.safetensors        model weights (loadable with safetensors alone)
    step-000120.state.safetensors  optimizer tensors + RNG states; JSON metadata for the rest
    last.json / best.json          pointers {"step": 120, "weights": ..., "state": ...}

Every file is written to a temp file in the same directory, fsynced, then ``os.replace``d; the
pointer is replaced last, so a kill at any moment leaves the previous complete checkpoint in place.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .errors import CheckpointError

TMP_PREFIX = ".tmp-"


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync, rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _atomic_save_tensors(path: Path, tensors: dict, metadata: dict | None = None) -> None:
    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, data)


# --- trainer state <-> (tensors, json) --------------------------------------------------------

def _flatten_optimizer(sd: dict) -> tuple[dict, dict]:
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"optim.{idx}.{key}"] = val
            else:
                scalars[f"{idx}.{key}"] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict, meta: dict) -> dict:
    state: dict = {}
    for name, val in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = val
    for name, val in meta.get("scalars", {}).items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = val
    return {"state": state, "param_groups": meta["param_groups"]}


def capture_rng() -> tuple[dict, dict]:
    """Every RNG the loop uses: torch (CPU and CUDA), numpy, python."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    tensors["rng.numpy.keys"] = torch.from_numpy(np_state[1].astype(np.int64))
    py = random.getstate()
    meta = {"numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": [py[0], list(py[1]), py[2]]}
    return tensors, meta


def restore_rng(tensors: dict, meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    n = meta["numpy"]
    np.random.set_state((n[0], tensors["rng.numpy.keys"].numpy().astype(np.uint32), n[1], n[2], n[3]))
    p = meta["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def save_checkpoint(ckpt_dir: Path, step: int, model: torch.nn.Module, optimizer, position: dict,
                    pointers: tuple = ("last",), extra: dict | None = None) -> dict:
    """Write weights + trainer state for ``step`` and point ``last`` (and/or ``best``) at them.

    Args:
        position: where the loop is (epoch, batch index, step, early-stopping state, ...), JSON-able.
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    stem = f"step-{step:08d}"
    weights = ckpt_dir / f"{stem}.safetensors"
    state = ckpt_dir / f"{stem}.state.safetensors"
    if not (weights.is_file() and state.is_file()):
        _atomic_save_tensors(weights, dict(model.state_dict()), {"step": str(step)})
        opt_t, opt_meta = _flatten_optimizer(optimizer.state_dict())
        rng_t, rng_meta = capture_rng()
        meta = {"optimizer": opt_meta, "rng": rng_meta, "position": position, "extra": extra or {}}
        _atomic_save_tensors(state, {**opt_t, **rng_t}, {"json": json.dumps(meta), "step": str(step)})
    pointer = {"step": step, "weights": weights.name, "state": state.name}
    for name in pointers:
        atomic_write_json(ckpt_dir / f"{name}.json", pointer)
    prune(ckpt_dir)
    return pointer


def prune(ckpt_dir: Path) -> None:
    """Delete stale temp files and checkpoint files no pointer refers to."""
    keep = set()
    for name in ("last", "best"):
        p = read_pointer(ckpt_dir, name, missing_ok=True)
        if p:
            keep.update((p["weights"], p["state"]))
    for f in Path(ckpt_dir).iterdir():
        if f.name.startswith(TMP_PREFIX) or (f.name.startswith("step-") and f.name not in keep):
            f.unlink(missing_ok=True)


def read_pointer(ckpt_dir: Path, name: str, missing_ok: bool = False):
    path = Path(ckpt_dir) / f"{name}.json"
    if not path.is_file():
        if missing_ok:
            return None
        raise CheckpointError(f"no '{name}' checkpoint in {ckpt_dir}")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{path} is corrupt: {exc}") from None


def load_weights(ckpt_dir: Path, name: str = "last") -> dict:
    p = read_pointer(ckpt_dir, name)
    try:
        return load_file(str(Path(ckpt_dir) / p["weights"]))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read weights of checkpoint '{name}' in {ckpt_dir}: {exc}") from None


def load_state(ckpt_dir: Path, name: str = "last") -> tuple[dict, dict, dict]:
    """``(weights, optimizer_state_dict, meta)`` of a checkpoint; restores nothing by itself."""
    from safetensors import safe_open

    p = read_pointer(ckpt_dir, name)
    weights = load_weights(ckpt_dir, name)
    path = Path(ckpt_dir) / p["state"]
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads(fh.metadata()["json"])
        tensors = load_file(str(path))
    except (OSError, SafetensorError, KeyError, ValueError) as exc:
        raise CheckpointError(f"cannot read trainer state {path}: {exc}") from None
    optim = _unflatten_optimizer(tensors, meta["optimizer"])
    meta["rng_tensors"] = {k: v for k, v in tensors.items() if k.startswith("rng.")}
    return weights, optim, meta
