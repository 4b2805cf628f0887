"""Stage 2: the spec language as strict pydantic models (torch-free).

Component configs register themselves (see :mod:`archspec.registry`); :func:`spec_model` assembles
the root :class:`Spec` model from the registries, so plugins extend the language.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, create_model

from ..registry import REGISTRIES, SECTION_KINDS, load_plugins, on_change
from . import encoders, fusions, heads, inputs, losses, training  # noqa: F401  (register components)
from . import audio, gbdt, members  # noqa: F401,E402  (register audio, `type: gbdt` and `type: run` heads)
from .base import Name, StrictModel
from .training import TrainingConfig

SECTIONS = SECTION_KINDS
FORMAT_VERSION = 1

_cache: dict = {}
on_change(_cache.clear)

# Kinds whose configs sit inside other models (a head's `loss`, `training.optimizer`, ...): their
# unions are built from the registries (:class:`~archspec.spec.base.RegistryUnion`) when the
# holding models build their schemas, so the holders are rebuilt when a plugin adds one.
FIELD_KINDS = ("loss", "optimizer", "schedule", "tokenizer")
_built_with = {k: tuple(REGISTRIES[k].names()) for k in FIELD_KINDS}


def refresh_models() -> None:
    """Rebuild every model holding a registry union if a loss/optimizer/schedule/tokenizer was
    registered since they were built (plugins register after the built-in models exist)."""
    now = {k: tuple(REGISTRIES[k].names()) for k in FIELD_KINDS}
    if now == _built_with:
        return
    holders = [REGISTRIES[k].configs[n] for k in (*FIELD_KINDS, *SECTIONS.values()) for n in REGISTRIES[k].names()]
    for cls in [*holders, TrainingConfig]:
        cls.model_rebuild(force=True)
    _built_with.update(now)
    _cache.clear()


def _union(kind: str):
    classes = tuple(REGISTRIES[kind].configs[n] for n in REGISTRIES[kind].names())
    if len(classes) == 1:
        return classes[0]
    return Annotated[Union[classes], Field(discriminator="type")]


def spec_model() -> type:
    """The root model, built from every registered component (plugins included)."""
    load_plugins()
    refresh_models()
    if "model" not in _cache:
        fields = {
            "archspec": (Literal[1], Field(description="Spec format version. Always `1` for now.")),
            "name": (Name, Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Name of the model (used for run directories and exports).")),
            "description": (str, Field("", description="What the model is for.")),
        }
        for section, kind in SECTIONS.items():
            required = section in ("inputs", "heads")
            fields[section] = (
                dict[Name, _union(kind)],
                Field(... if required else {}, description=_SECTION_DOCS[section]),
            )
        fields["training"] = (TrainingConfig, Field(TrainingConfig(), description="How to train."))
        model = create_model("Spec", __base__=StrictModel, **fields)
        model.__doc__ = "An archspec model spec: a graph of named inputs, encoders, fusions and heads."
        _cache["model"] = model
    return _cache["model"]


_SECTION_DOCS = {
    "inputs": "Data columns the model reads, by node name.",
    "encoders": "Encoders over inputs (or over other encoders/fusions), by node name.",
    "fusions": "Fusions by node name: early (feature-level), late (decision-level), mmoe (mixture of experts, one output per task) and cross_attention (sequences).",
    "heads": "Predictions with their losses and metrics, by node name.",
}


def node_adapter(section: str):
    """A pydantic ``TypeAdapter`` validating one node of ``section``."""
    key = ("adapter", section)
    if key not in _cache:
        from pydantic import TypeAdapter

        load_plugins()
        refresh_models()
        _cache[key] = TypeAdapter(_union(SECTIONS[section]))
    return _cache[key]


def json_schema() -> dict:
    """JSON Schema (draft 2020-12) of the spec language, generated from the models."""
    schema = spec_model().model_json_schema(by_alias=True)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "$id": "https://archspec.dev/schema/v1/archspec.schema.json",
              **schema, "title": "archspec spec"}
    return schema
