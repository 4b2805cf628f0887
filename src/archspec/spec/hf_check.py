"""Checks of an inline transformers ``config:`` before torch: sizes, counts, probabilities, unknown keys.

transformers accepts any keyword in a config and fails (or silently ignores it) only when the model
is built: a layer count of -2 surfaces as a torch "invalid shape dimension" error, a misspelt key
is stored and never read. Here each value is checked where it is written (file:line:col).
"""

from __future__ import annotations

import math
import re

from ..errors import WARNING, did_you_mean
from . import hf_fields

#: sizes and counts whose name says so: positive integers
_SIZE = re.compile(r"^(num_|n_)|(_size|_dim|_layers|_heads|_embeddings|_positions|_layer|_head)$")
_SIZE_KEYS = {"dim", "d_model", "d_ff", "d_kv", "n_embd", "n_inner", "hidden_dim", "embed_dim", "head_dim"}
#: probabilities: dropouts and *_prob
_PROB = re.compile(r"dropout|_prob$|^dropout")
#: small positive numbers
_EPS = {"layer_norm_eps", "layer_norm_epsilon", "norm_eps", "rms_norm_eps", "initializer_range"}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_inline_config(config: dict | None, model_type, ctx) -> None:
    """Report bad values (``E-HF-CONFIG``) and unknown keys (``W-HF-KEY``) of an inline config.

    Args:
        config: the spec's inline ``config:`` mapping (only keys written in the spec are checked).
        model_type: the model type (inline, or of the pretrained config it overrides), if known.
        ctx: the checker context of the encoder node (reports relative to the node).
    """
    if not config:
        return
    defaults = hf_fields.defaults(model_type) if isinstance(model_type, str) else {}
    known = hf_fields.known_fields(model_type) if isinstance(model_type, str) else None
    for key, value in config.items():
        path = ("config", key)
        if key == "model_type":
            continue
        if known is not None and key not in known:
            near = did_you_mean(key, known)
            ctx.report("W-HF-KEY", path, f"'{key}' is not a field of transformers' {model_type} config: it "
                       "would be stored and ignored", near or f"check the {model_type} config's field names",
                       severity=WARNING, key=True)
            continue
        default = defaults.get(key)
        if isinstance(default, (list, tuple)):  # e.g. wav2vec2's conv_dim / conv_kernel / conv_stride
            if all(_is_int(d) for d in default) and not (
                    isinstance(value, list) and value and all(_is_int(v) and v >= 1 for v in value)):
                ctx.report("E-HF-CONFIG", path, f"`{key}` must be a list of positive integers, got {value!r}",
                           f"e.g. `{key}: {list(default)}`")
        elif _SIZE.search(key) or key in _SIZE_KEYS:
            if _is_int(default) and default <= 0:
                lowest = default  # e.g. deberta's max_relative_positions -1 means "same as max positions"
            elif key == "type_vocab_size" or key == "chunk_size_feed_forward":
                lowest = 0
            else:
                lowest = 1
            if value is None and default is None and key in defaults:
                continue
            if not _is_int(value):
                what = "a whole number" if _is_num(value) else "a number"
                ctx.report("E-HF-CONFIG", path, f"`{key}` must be an integer, got {value!r}",
                           f"write {what}, e.g. `{key}: {default if _is_int(default) and default >= lowest else max(lowest, 2)}`")
            elif value < lowest:
                ctx.report("E-HF-CONFIG", path, f"`{key}` is {value}, but a size or count must be ≥ {lowest}",
                           "use a positive number" if lowest == 1 else f"use a number ≥ {lowest}")
        elif _PROB.search(key):
            if value is None:
                continue
            if not _is_num(value) or not (0 <= value <= 1) or (isinstance(value, float) and math.isnan(value)):
                ctx.report("E-HF-CONFIG", path, f"`{key}` is a probability, got {value!r}",
                           "use a number from 0 to 1 (e.g. 0.1), or `null` where the model allows it")
        elif key in _EPS:
            if not _is_num(value) or not math.isfinite(value) or value < 0 or (value == 0 and key != "initializer_range"):
                ctx.report("E-HF-CONFIG", path, f"`{key}` must be a small positive number, got {value!r}",
                           f"e.g. `{key}: {defaults.get(key, 1e-12)}`")
