"""Registries of components by short name (timm's ``@register_model``, Ludwig's config/impl split).

Each kind (inputs, encoders, fusions, heads, losses, optimizers, schedules) has one registry. A
component registers its strict pydantic *config* under its ``type`` name here, torch-free; its
torch *builder* registers under the same name from :mod:`archspec.nn`. Spec files name components
by these short names only, never by Python import path. Third parties add components through the
``archspec.components`` entry-point group: each entry point names a module that registers with
:func:`register_config` / :func:`register_builder` when imported.
"""

from __future__ import annotations

from typing import Callable

from .errors import did_you_mean

ENTRY_POINT_GROUP = "archspec.components"
# The one section → node kind table: a spec's sections, in the order they are read and built.
SECTION_KINDS = {"inputs": "input", "encoders": "encoder", "fusions": "fusion", "heads": "head"}
NODE_KINDS = tuple(SECTION_KINDS.values())
KINDS = ("input", "encoder", "fusion", "head", "loss", "optimizer", "schedule", "tokenizer")


class RegistryError(RuntimeError):
    """A programming error in a component's registration (not a user spec error)."""


class Registry:
    """Configs and builders of one kind of component, by ``type`` name."""

    def __init__(self, kind: str):
        self.kind = kind
        self.configs: dict[str, type] = {}
        self.builders: dict[str, Callable] = {}

    def add_config(self, name: str, cls: type) -> type:
        if name in self.configs:
            raise RegistryError(f"duplicate {self.kind} type '{name}'")
        if self.kind in NODE_KINDS and not callable(getattr(cls, "infer", None)):
            raise RegistryError(f"{self.kind} type '{name}' ({cls.__name__}) has no infer(ins, ctx) method: "
                                "every node type states its output shape")
        self.configs[name] = cls
        _invalidate()
        return cls

    def add_builder(self, name: str, fn: Callable) -> Callable:
        if name in self.builders:
            raise RegistryError(f"duplicate {self.kind} builder '{name}'")
        self.builders[name] = fn
        return fn

    def names(self) -> list[str]:
        return sorted(self.configs)

    def unknown(self, name: str) -> str:
        """Message for an unknown name: ``unknown encoder 'mpl' — did you mean 'mlp'?``."""
        hint = did_you_mean(name, self.configs)
        return f"unknown {self.kind} type '{name}'" + (f" — {hint}" if hint else "")


REGISTRIES: dict[str, Registry] = {k: Registry(k) for k in KINDS}


def register_config(kind: str, name: str) -> Callable[[type], type]:
    """Class decorator registering a pydantic config as ``kind`` component ``name``."""

    def deco(cls: type) -> type:
        return REGISTRIES[kind].add_config(name, cls)

    return deco


def register_builder(kind: str, name: str) -> Callable[[Callable], Callable]:
    """Function decorator registering the torch builder of ``kind`` component ``name``."""

    def deco(fn: Callable) -> Callable:
        return REGISTRIES[kind].add_builder(name, fn)

    return deco


_PLUGINS_LOADED = False
_listeners: list[Callable[[], None]] = []


def _invalidate() -> None:
    for fn in _listeners:
        fn()


def on_change(fn: Callable[[], None]) -> None:
    """Call ``fn`` whenever a config is registered (the spec model cache listens)."""
    _listeners.append(fn)


def load_plugins() -> list[str]:
    """Import every module named in the ``archspec.components`` entry-point group (once).

    Returns:
        the names of the entry points loaded.
    """
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return []
    _PLUGINS_LOADED = True
    from importlib.metadata import entry_points

    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()
        loaded.append(ep.name)
    return loaded
