"""Common pieces of the spec language: strict models, bounded numbers, node protocol."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..shapes import Shape

# Numbers in a spec are finite: a NaN learning rate or an infinite dropout is a mistake.
PositiveInt = Annotated[int, Field(gt=0, strict=True)]
NonNegInt = Annotated[int, Field(ge=0, strict=True)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=64)]

Activation = Literal["relu", "gelu", "tanh", "sigmoid", "silu", "leaky_relu", "elu", "softmax", "linear"]
Norm = Literal["none", "batch_norm", "layer_norm"]


class RegistryUnion:
    """Annotation marker: the tagged union (on ``type``) of every config registered for ``kind``.

    The union is built from :data:`archspec.registry.REGISTRIES` whenever the model holding the
    field builds its schema, so a plugin's loss, optimizer, schedule or tokenizer is accepted
    wherever the built-in ones are (:func:`archspec.spec.refresh_models` rebuilds the holders after
    a plugin registers one). Use as ``Annotated[object, RegistryUnion("loss")]``.
    """

    def __init__(self, kind: str):
        self.kind = kind

    def union(self):
        from typing import Union

        from ..registry import REGISTRIES

        reg = REGISTRIES[self.kind]
        classes = tuple(reg.configs.values())  # registration order: built-ins first, then plugins
        if len(classes) == 1:
            return classes[0]
        return Annotated[Union[classes], Field(discriminator="type")]

    def __get_pydantic_core_schema__(self, source, handler):
        return handler.generate_schema(self.union())


class StrictModel(BaseModel):
    """Base of every spec model: unknown keys rejected, frozen, docstrings become descriptions."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        validate_default=True,
        strict=True,
    )


class Node(StrictModel):
    """A named node of the graph (an input, encoder, fusion or head)."""

    section: ClassVar[str] = ""
    #: shape kinds this node accepts from the nodes it references
    accepts: ClassVar[frozenset] = frozenset()

    description: str | None = None
    """Free text for readers of the spec; ignored by the compiler."""

    def references(self) -> list[tuple[tuple, str]]:
        """``(relative YAML path, node name)`` for every edge out of this node."""
        return []

    # Every registered node type defines ``infer(self, ins: list[Shape], ctx) -> Shape``: its output
    # shape from its input shapes, reporting problems through ``ctx``. ``register_config`` refuses
    # a node type without one, so a plugin learns at import time, not when a spec is checked.


class Layers(StrictModel):
    """Mixin fields for a stack of dense layers."""

    layers: list[PositiveInt] = []
    """Widths of the dense layers, in order. Empty means none."""
    activation: Activation = "relu"
    """Activation after each dense layer."""
    dropout: Probability = 0.0
    """Dropout probability after each dense layer's activation."""
    norm: Norm = "none"
    """Normalisation after each dense layer (before the activation)."""
