"""``archspec fetch``: download every pretrained file some specs name, for machines without network.

Hub models and tokenizers go through ``huggingface_hub`` (``snapshot_download``, the cache layout
transformers reads), torchvision weights through torch's hub download (same file name, same hash
check as torchvision). With ``cache_dir`` both go under one folder to copy to an air-gapped
cluster::

    DIR/huggingface/hub/...          HF_HOME=DIR/huggingface
    DIR/torch/hub/checkpoints/...    TORCH_HOME=DIR/torch

Offline (``--offline``), nothing is downloaded: each file is looked up in the caches, so the same
command tells an air-gapped node whether everything is there.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import hub
from .errors import FetchError

#: small files of a model repo transformers may read (config, tokenizer, generation settings)
_SMALL = ("*.json", "*.txt", "*.model", "*.jinja", "*.tiktoken")
_TOKENIZER_NEEDS = ("tokenizer_config.json", "tokenizer.json", "vocab.txt", "vocab.json", "*.model")


@dataclass
class Fetched:
    """One fetched (or already cached) thing: what, where it lives, how many bytes."""

    label: str
    kind: str
    path: str = ""
    size: int = 0
    files: int = 0
    cached: bool = False
    error: str = ""
    where: list = field(default_factory=list)


def human(n: int) -> str:
    """Bytes as a short human size.

    Example:
        >>> human(0), human(2048), human(5_300_000)
        ('0 B', '2.0 KB', '5.1 MB')
    """
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover


def _hf_patterns(files: dict[str, int], kinds: set[str]) -> list[str]:
    """Which top-level files of a repo to download: small config/tokenizer files, and for a model its
    weights — safetensors where the repo has them, else PyTorch ``.bin`` (as transformers chooses)."""
    top = [f for f in files if "/" not in f]
    chosen = [f for f in top if any(fnmatch.fnmatch(f, p) for p in _SMALL)]
    if "model" in kinds:
        safetensors = [f for f in top if f.endswith(".safetensors")]
        if safetensors:
            chosen += safetensors
        else:
            chosen += [f for f in top if f.startswith("pytorch_model") and f.endswith(".bin")]
    return sorted(set(chosen))


def _fetch_hf(repo: str, kinds: set[str], cache_dir: Path | None) -> Fetched:
    from huggingface_hub import HfApi, snapshot_download, try_to_load_from_cache

    item = Fetched(repo, "+".join(sorted(kinds)))
    try:
        info = HfApi().model_info(repo, files_metadata=True)
        files = {s.rfilename: int(s.size or 0) for s in info.siblings or []}
        chosen = _hf_patterns(files, kinds)
        if "model" in kinds and not any(f.endswith((".safetensors", ".bin")) for f in chosen):
            item.error = f"'{repo}' has no PyTorch weights (model.safetensors or pytorch_model.bin) on the hub"
            return item
        if "tokenizer" in kinds and not any(fnmatch.fnmatch(f, p) for f in chosen for p in _TOKENIZER_NEEDS):
            item.error = f"'{repo}' has no tokenizer files on the hub"
            return item
        item.cached = all(isinstance(try_to_load_from_cache(repo, f, cache_dir=cache_dir, revision=info.sha), str)
                          for f in chosen)
        item.path = snapshot_download(repo, allow_patterns=chosen, cache_dir=cache_dir)
    except Exception as exc:  # noqa: BLE001 - every failure is reported by name, the others still run
        item.error = hub.explain(hub._root_cause(exc), repo)
        return item
    item.files, item.size = len(chosen), sum(files.get(f, 0) for f in chosen)
    return item


def _check_hf(repo: str, kinds: set[str], cache_dir: Path | None) -> Fetched:
    """Offline: is the snapshot `main` points at in the cache, with what these kinds need?"""
    root = (cache_dir or hub.hf_cache()) / ("models--" + repo.replace("/", "--"))
    item = Fetched(repo, "+".join(sorted(kinds)), cached=True)
    ref = root / "refs" / "main"
    snap = root / "snapshots" / ref.read_text().strip() if ref.is_file() else None
    if snap is None or not snap.is_dir():
        item.error = f"not in the Hugging Face cache ({root.parent})"
        return item
    names = [p.name for p in snap.iterdir() if p.is_file()]
    needs = [("config.json", ("config.json",))]
    if "model" in kinds:
        needs.append(("weights", ("*.safetensors", "pytorch_model*.bin")))
    if "tokenizer" in kinds:
        needs.append(("tokenizer files", _TOKENIZER_NEEDS))
    missing = [what for what, pats in needs if not any(fnmatch.fnmatch(n, p) for n in names for p in pats)]
    if missing:
        item.error = f"incomplete in the Hugging Face cache ({snap}): no {', '.join(missing)}"
        return item
    item.path, item.files = str(snap), len(names)
    item.size = sum((snap / n).stat().st_size for n in names)
    return item


def _fetch_torchvision(model: str, weights: str, cache_dir: Path | None) -> Fetched:
    import torch
    import torchvision

    item = Fetched(f"{model}.{weights}", "torchvision")
    try:
        enum = torchvision.models.get_model_weights(model)
        w = enum.DEFAULT if weights == "DEFAULT" else enum[weights]
    except (KeyError, ValueError):
        item.error = f"torchvision model '{model}' has no weights '{weights}'"
        return item
    folder = (cache_dir / "torch" / "hub" if cache_dir else Path(torch.hub.get_dir())) / "checkpoints"
    target = folder / os.path.basename(w.url)
    item.path, item.cached = str(target), target.is_file()
    if not item.cached:
        if hub.offline():
            item.error = f"not in the torch hub cache ({target})"
            return item
        # exactly what torchvision's load_state_dict_from_url(check_hash=True) does, without loading it
        match = torch.hub.HASH_REGEX.search(target.name)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(w.url, str(target), match.group(1) if match else None, progress=True)
        except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, hash mismatch: reported by name
            item.error = f"cannot download {w.url}: {(str(exc).strip().splitlines() or [type(exc).__name__])[0]}"
            return item
    item.files, item.size = 1, target.stat().st_size
    return item


def _checked(source):
    """A spec file, or a run directory (its own spec, relative paths as when it was trained)."""
    from .pipeline import check_file, check_text

    path = Path(source)
    if not path.is_dir():
        return check_file(path).raise_for_errors()
    if not (path / "spec.yaml").is_file():
        raise FetchError(f"{source} is a directory but not a run directory (no spec.yaml): give a spec file or a run")
    from .train import RunPaths, _stored_base

    run = RunPaths(path)
    return check_text(run.spec.read_text(), str(run.spec), base_dir=_stored_base(run)).raise_for_errors()


def fetch(files, cache_dir=None, echo=print) -> list[Fetched]:
    """Download (or, offline, look up) every pretrained model, tokenizer and torchvision weights the specs name.

    Args:
        files: spec files or run directories (what evaluating a run elsewhere needs).
        cache_dir: one folder for everything (``DIR/huggingface/hub``, ``DIR/torch/hub``); default:
            the libraries' own caches (``HF_HOME``, ``TORCH_HOME``).
        echo: where each line of the report goes.

    Returns:
        one :class:`Fetched` per distinct thing, in the order the specs name them.

    Raises:
        SpecError: a spec is invalid (nothing is fetched).
        FetchError: something could not be fetched; every failure is named with its reason.
    """
    wanted: dict[tuple, tuple[set, list]] = {}
    for f in files:
        checked = _checked(f)
        for ref in hub.references(checked.spec):
            key = ("hf", ref.name) if ref.kind in ("model", "tokenizer") else ("tv", ref.name, ref.weights)
            kinds, where = wanted.setdefault(key, (set(), []))
            kinds.add(ref.kind)
            where.append(f"{f}: {ref.where}")
    root = Path(cache_dir).expanduser().resolve() if cache_dir else None
    hf_dir = root / "huggingface" / "hub" if root else None
    results = []
    if not wanted:
        echo("nothing to fetch: the specs name no hub model, pretrained tokenizer or torchvision weights")
    for key, (kinds, where) in wanted.items():
        if key[0] == "hf":
            item = _check_hf(key[1], kinds, hf_dir) if hub.offline() else _fetch_hf(key[1], kinds, hf_dir)
        else:
            item = _fetch_torchvision(key[1], key[2], root)
        item.where = where
        results.append(item)
        if item.error:
            echo(f"FAILED  {item.label} ({item.kind}): {item.error}")
        else:
            state = "cached " if item.cached else "fetched"
            echo(f"{state} {item.label} ({item.kind}): {item.files} file{'s' * (item.files != 1)}, "
                 f"{human(item.size)} → {item.path}")
    ok = [r for r in results if not r.error]
    if ok:
        echo(f"{len(ok)} of {len(results)} ready, {human(sum(r.size for r in ok))} in all"
             + (" (offline: looked up in the caches, nothing downloaded)" if hub.offline() else ""))
    if root and ok and not hub.offline():
        echo(f"to train without network: copy {root} to the other machine and set HF_HOME={root / 'huggingface'} "
             f"TORCH_HOME={root / 'torch'} (and --offline or HF_HUB_OFFLINE=1)")
    failed = [r for r in results if r.error]
    if failed:
        raise FetchError(f"could not fetch {len(failed)} of {len(results)}: " + "; ".join(
            f"{r.label} ({r.error}; named at {', '.join(r.where)})" for r in failed))
    return results

