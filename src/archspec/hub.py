"""Pretrained files: where they come from, where they are cached, and what to do without network.

Named models are downloaded on first use by the libraries that own them, into their standard
caches: ``transformers``/``huggingface_hub`` for ``transformer.pretrained`` and pretrained
tokenizers (the Hugging Face cache, ``HF_HOME`` / ``HF_HUB_CACHE``), torchvision's weights API for
``torchvision.weights`` (``TORCH_HOME``). This module is torch-free: it answers "are we offline?",
"where is the cache?", "what does this spec name?", and, for ``archspec validate --online``, fetches
one hub model's ``config.json`` through ``huggingface_hub``.

Offline mode (``--offline``, ``ARCHSPEC_OFFLINE=1``, ``HF_HUB_OFFLINE=1`` or ``TRANSFORMERS_OFFLINE=1``)
never opens a connection: files come from the caches or the build fails at once with
:func:`how_to_get`.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from dataclasses import dataclass
from pathlib import Path

OFFLINE_ENV = "ARCHSPEC_OFFLINE"
_OFFLINE_VARS = (OFFLINE_ENV, "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE = {"1", "true", "yes", "on"}


def _true(value) -> bool:
    return str(value or "").strip().lower() in _TRUE


def offline() -> bool:
    """Whether archspec must not reach the network.

    Example:
        >>> offline() == bool(offline_reason())
        True
    """
    return any(_true(os.environ.get(k)) for k in _OFFLINE_VARS)


def offline_reason() -> str:
    """Which setting turned offline mode on, as the user would write it (``""`` when online)."""
    for key in _OFFLINE_VARS:
        if _true(os.environ.get(key)):
            return "--offline / ARCHSPEC_OFFLINE=1" if key == OFFLINE_ENV else f"{key}=1"
    return ""


def go_offline() -> None:
    """What ``--offline`` does: offline mode for this process and every process it starts.

    ``huggingface_hub`` reads ``HF_HUB_OFFLINE`` when it is imported; the CLI calls this before any
    import of it, and archspec also passes ``local_files_only=True`` itself whenever :func:`offline`.
    """
    os.environ[OFFLINE_ENV] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


def hf_cache() -> Path:
    """The Hugging Face hub cache, resolved as ``huggingface_hub`` does (``HF_HUB_CACHE``, ``HF_HOME``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def torch_hub_dir() -> Path:
    """torch's hub directory, resolved as ``torch.hub.get_dir()`` does (``TORCH_HOME``), without torch."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "torch")
    return Path(home).expanduser() / "hub"


def how_to_get(name: str, what: str = "model") -> str:
    """The one hint every "not available offline" message ends with."""
    return (f"fetch it where network is allowed with `archspec fetch SPEC` (or `hf download {name}`) and copy "
            f"the Hugging Face cache ({hf_cache()}) to this machine, or give a local directory saved with "
            f"save_pretrained" + (", or an inline `config` to build it untrained" if what == "model" else ""))


def is_hub_name(ref: str) -> bool:
    """A pretrained reference that names a hub model rather than a local directory."""
    return not (ref.startswith((".", "/", "~")) or os.sep in ref and Path(ref).expanduser().is_dir())


# --------------------------------------------------------------------------- validate --online

_ONLINE = contextvars.ContextVar("archspec_hub_online", default=False)


@contextlib.contextmanager
def online_lookups(enabled: bool = True):
    """Within this block, checks may fetch a hub model's ``config.json`` (``archspec validate --online``)."""
    token = _ONLINE.set(bool(enabled))
    try:
        yield
    finally:
        _ONLINE.reset(token)


def lookups_enabled() -> bool:
    """Whether the current checks may fetch ``config.json`` from the hub."""
    return _ONLINE.get()


def _error_classes():
    from huggingface_hub import errors as e

    remote = getattr(e, "RemoteEntryNotFoundError", None) or getattr(e, "EntryNotFoundError")
    local = getattr(e, "LocalEntryNotFoundError")
    return e.GatedRepoError, e.RepositoryNotFoundError, e.RevisionNotFoundError, remote, local, \
        getattr(e, "OfflineModeIsEnabled", ConnectionError), e.HFValidationError


def explain(exc: BaseException, name: str) -> str:
    """A one-line reason why hub model ``name`` could not be fetched, from a huggingface_hub error."""
    try:
        gated, missing, revision, no_entry, local, off, invalid = _error_classes()
    except ImportError:
        gated = missing = revision = no_entry = local = off = invalid = ()
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    if gated and isinstance(exc, gated):
        return f"'{name}' is gated on the hub: accept its terms on its page and log in (`hf auth login`)"
    if missing and isinstance(exc, missing):
        return f"no model '{name}' on the hub (or it is private: log in with `hf auth login`)"
    if revision and isinstance(exc, revision):
        return f"'{name}' has no such revision on the hub"
    if no_entry and isinstance(exc, no_entry) and not isinstance(exc, local):
        return f"'{name}' has no such file on the hub ({text})"
    if invalid and isinstance(exc, invalid):
        return f"'{name}' is not a valid hub model name"
    if off and isinstance(exc, off) or offline():
        return f"offline mode is on ({offline_reason() or 'local_files_only'})"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    if local and isinstance(exc, local):  # "cannot find the requested files in the local cache ...": say why
        cause = exc.__cause__ or exc.__context__
        text = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:200] if cause else "no answer"
    return f"the hub ({endpoint}) could not be reached: {text}"


def _root_cause(exc: BaseException) -> BaseException:
    """The huggingface_hub error behind a transformers ``OSError`` (transformers wraps them); ``exc``
    itself when none is in its chain."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        if type(e).__module__.startswith("huggingface_hub"):
            return e
        todo += [c for c in (e.__cause__, e.__context__) if c is not None]
    return exc


def load_failure(name: str, exc: BaseException, what: str = "model") -> str:
    """Why hub ``name`` could not be loaded, and how to get it: the tail of a BuildError message."""
    if offline():
        return (f"not in the Hugging Face cache ({hf_cache()}) and offline mode is on ({offline_reason()}) — "
                + how_to_get(name, what))
    cause = _root_cause(exc)
    if not type(cause).__module__.startswith("huggingface_hub"):  # downloaded, but transformers refused it
        if "trust_remote_code" in str(exc):
            return (f"'{name}' needs code from its own repository to load (trust_remote_code), which archspec "
                    "never runs — choose a model that transformers itself implements")
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        return f"{first} — check that '{name}' is a transformers model, or give a local directory saved with " \
               "save_pretrained"
    return f"cannot download it: {explain(cause, name)} — check the name and the network, or " + how_to_get(name, what)


def fetch_config(name: str):
    """``config.json`` of hub model ``name``, downloaded into the Hugging Face cache (a few KB, no torch).

    Returns:
        ``(path, "")`` on success, ``(None, why)`` otherwise; never raises for network or hub trouble.
    """
    if offline():
        return None, f"offline mode is on ({offline_reason()})"
    try:
        from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    except ImportError:
        return None, "`huggingface_hub` is not installed (pip install 'archspec[hub]')"
    try:
        # one HEAD first, without retries: an unreachable hub is a note at once (hf_hub_download alone
        # backs off for ~25 s when the file is not cached)
        get_hf_file_metadata(hf_hub_url(name, "config.json"), timeout=10)
        return Path(hf_hub_download(name, "config.json", etag_timeout=10)), ""
    except Exception as exc:  # noqa: BLE001 - any failure becomes a note that says why, never a traceback
        return None, explain(exc, name)


# --------------------------------------------------------------------------- what a spec names

@dataclass(frozen=True)
class Reference:
    """One pretrained thing a spec names.

    Attributes:
        kind: ``model`` (transformers), ``tokenizer`` or ``torchvision``.
        name: hub repo id, or the torchvision model name.
        weights: the torchvision weights name (``DEFAULT``, ``IMAGENET1K_V2``); ``""`` otherwise.
        where: the spec path that names it, e.g. ``encoders.text.pretrained``.
    """

    kind: str
    name: str
    weights: str = ""
    where: str = ""

    def label(self) -> str:
        return f"{self.name}.{self.weights}" if self.kind == "torchvision" else self.name


def references(spec) -> list[Reference]:
    """Every downloadable pretrained model, tokenizer and torchvision weights a checked spec names.

    Local directories and ``weights_path`` files are not listed: there is nothing to download.
    """
    out: list[Reference] = []
    for name, cfg in getattr(spec, "inputs", {}).items():
        tok = getattr(cfg, "tokenizer", None)
        if getattr(tok, "type", None) == "pretrained" and is_hub_name(tok.name):
            out.append(Reference("tokenizer", tok.name, where=f"inputs.{name}.tokenizer.name"))
    for name, cfg in getattr(spec, "encoders", {}).items():
        kind = getattr(cfg, "type", None)
        if kind == "transformer" and cfg.pretrained and is_hub_name(cfg.pretrained):
            out.append(Reference("model", cfg.pretrained, where=f"encoders.{name}.pretrained"))
        elif kind == "torchvision" and cfg.weights:
            out.append(Reference("torchvision", cfg.model, cfg.weights, where=f"encoders.{name}.weights"))
    return out
