"""Torch builders for every component; importing this package registers them."""

from . import audio, encoders, fusions, gbdt, heads, losses  # noqa: F401
