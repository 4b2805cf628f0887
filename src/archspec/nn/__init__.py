"""Torch builders for every component; importing this package registers them."""

from . import encoders, fusions, heads, losses  # noqa: F401
