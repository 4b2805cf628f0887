"""Encoders: turn one input (or another node's features) into a feature vector `(B, D)`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ..errors import NOTE, WARNING
from ..registry import register_config
from ..shapes import AUDIO, FEATURES, IMAGE, INDEX, SEQUENCE, TOKENS, Shape
from . import hf
from .backbones import BACKBONE_WIDTHS, FIXED_SIZE
from .base import Activation, Layers, Name, Node, PositiveInt

FEATURE_KINDS = frozenset({FEATURES})


class EncoderNode(Node):
    section = "encoders"

    input: Name
    """The node this encoder reads: an input, or another encoder or early fusion for stacking."""
    trainable: bool = True
    """`false` freezes every parameter of this encoder (transfer learning)."""

    def references(self):
        return [(("input",), self.input)]


@register_config("encoder", "mlp")
class MLPEncoderConfig(EncoderNode, Layers):
    """Dense layers over a feature vector (numeric/tabular inputs, precomputed vectors, other encoders)."""

    type: Literal["mlp"]
    layers: Annotated[list[PositiveInt], Field(min_length=1)]
    """Widths of the dense layers, in order, e.g. `[128, 64, 32]`."""
    activate_last: bool = True
    """Apply the activation (and dropout/norm) after the last layer too (Keras `Dense(32, activation=...)`)."""

    accepts = FEATURE_KINDS

    def infer(self, ins, ctx) -> Shape:
        return Shape(FEATURES, (self.layers[-1],))


@register_config("encoder", "identity")
class IdentityEncoderConfig(EncoderNode):
    """Passes a feature vector through unchanged (precomputed embeddings, raw numeric features)."""

    type: Literal["identity"]
    accepts = FEATURE_KINDS

    def infer(self, ins, ctx) -> Shape:
        return Shape(FEATURES, ins[0].dims)


@register_config("encoder", "embedding")
class EmbeddingEncoderConfig(EncoderNode):
    """A learned vector per category of a `categorical` input."""

    type: Literal["embedding"]
    dim: PositiveInt
    """Embedding width."""
    accepts = frozenset({INDEX})

    def infer(self, ins, ctx) -> Shape:
        return Shape(FEATURES, (self.dim,))


@register_config("encoder", "embedding_bag")
class EmbeddingBagEncoderConfig(EncoderNode):
    """A light text encoder: token embeddings pooled over the sequence (padding ignored)."""

    type: Literal["embedding_bag"]
    dim: PositiveInt
    """Embedding width."""
    pooling: Literal["mean", "max", "sum", "none"] = "mean"
    """How token vectors are pooled; `none` gives the token vectors as a sequence `(B, T, dim)`
    (for a `cross_attention` fusion)."""
    vocab_size: PositiveInt | None = None
    """Embedding rows; defaults to the tokenizer's vocabulary size."""
    accepts = frozenset({TOKENS})

    def infer(self, ins, ctx) -> Shape:
        if self.pooling == "none":
            return Shape(SEQUENCE, (ins[0].dims[0], self.dim))
        return Shape(FEATURES, (self.dim,))


@register_config("encoder", "cnn")
class CNNEncoderConfig(EncoderNode):
    """A small convolutional network over images: conv → norm → activation → pool per stage, then global pooling."""

    type: Literal["cnn"]
    channels: Annotated[list[PositiveInt], Field(min_length=1)] = [32, 64]
    """Output channels of each conv stage."""
    kernel_size: Annotated[int, Field(gt=0, le=15, strict=True)] = 3
    """Square kernel size (odd sizes keep the spatial size before pooling)."""
    activation: Activation = "relu"
    """Activation of each conv stage (after its normalisation)."""
    norm: Literal["none", "batch_norm"] = "batch_norm"
    """Normalisation after each convolution."""
    global_pool: Literal["avg", "max", "none"] = "avg"
    """Pooling of the last feature map to a vector; `none` gives the map as a sequence of patches
    `(B, H' × W', channels)`, row by row (for a `cross_attention` fusion)."""
    accepts = frozenset({IMAGE})

    def infer(self, ins, ctx) -> Shape:
        _, h, w = ins[0].dims
        if min(h, w) < 2 ** (len(self.channels) - 1):
            ctx.report("E-SHAPE", ("channels",), f"{len(self.channels)} stages halve a {h}x{w} image "
                       "below 1 pixel", "use fewer stages or a larger image size")
        if self.global_pool == "none":
            grow = 1 - self.kernel_size % 2  # `padding = k // 2` keeps odd sizes, adds 1 for even ones
            for i in range(len(self.channels)):
                h, w = h + grow, w + grow
                if i < len(self.channels) - 1:
                    h, w = h // 2, w // 2
            return Shape(SEQUENCE, (max(h, 0) * max(w, 0), self.channels[-1]))
        return Shape(FEATURES, (self.channels[-1],))


@register_config("encoder", "torchvision")
class TorchvisionEncoderConfig(EncoderNode):
    """A torchvision backbone by name (`torchvision.models.get_model`), classifier removed, pooled features."""

    type: Literal["torchvision"]
    model: Name
    """Backbone name, e.g. `resnet50`, `efficientnet_b0`, `mobilenet_v3_small`."""
    weights: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    """torchvision weights name (e.g. `DEFAULT`, `IMAGENET1K_V2`), downloaded on first use into the torch hub
    cache (`TORCH_HOME`); `null` = random init."""
    weights_path: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    """A local state-dict file (safetensors or `.pth`) to load instead of named weights."""
    accepts = frozenset({IMAGE})

    @model_validator(mode="after")
    def _one_source(self):
        if self.weights and self.weights_path:
            raise ValueError("both `weights` and `weights_path` are given — keep one: named torchvision "
                             "weights or a local file")
        return self

    def infer(self, ins, ctx) -> Shape:
        width = BACKBONE_WIDTHS.get(self.model)
        if width is None:
            from ..errors import did_you_mean

            near = did_you_mean(self.model, BACKBONE_WIDTHS)
            ctx.report("W-BACKBONE", ("model",), f"'{self.model}' is not in archspec's table of torchvision "
                       "backbones; its width is deferred to build", near or "check the name against "
                       "torchvision.models.list_models()", severity=WARNING)
        fixed = FIXED_SIZE.get(self.model)
        if fixed and tuple(ins[0].dims[1:]) != (fixed, fixed):
            ctx.report("E-SHAPE", ("model",), f"{self.model} needs {fixed}x{fixed} images, the input gives "
                       f"{ins[0].dims[1]}x{ins[0].dims[2]}", f"set `size: [{fixed}, {fixed}]` on the image input")
        if ins[0].dims[0] != 3:
            ctx.report("E-SHAPE", ("input",), f"torchvision backbones take 3-channel images, the input has "
                       f"{ins[0].dims[0]}", "set `channels: 3` on the image input")
        if self.weights:
            ctx.report("N-WEIGHTS", ("weights",), f"weights '{self.weights}' are downloaded by torchvision on "
                       "first build into the torch hub cache (TORCH_HOME) unless they are there already",
                       "for an offline machine, run `archspec fetch` where network is allowed (or give "
                       "`weights_path` to a local file)", severity=NOTE)
        return Shape(FEATURES, (width,))


@register_config("encoder", "transformer")
class TransformerEncoderConfig(EncoderNode):
    """Any Hugging Face transformers encoder: pretrained (hub name or local directory) or built from a config.

    Over a `text` input it reads token ids and the attention mask. Over an `audio` input it runs an audio
    model (`wav2vec2`, `hubert`, `wavlm`, `data2vec-audio`, `audio-spectrogram-transformer`) on the
    waveform, after the model's own feature extractor (its `preprocessor_config.json`, or the transformers
    default for a config-only model), and pools over the time frames (see docs/spec.md, "Audio encoders")."""

    type: Literal["transformer"]
    pretrained: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    """Hub name (e.g. `bert-base-uncased`, downloaded on first use into the Hugging Face cache) or local
    directory (starting with `./`, `../`, `/` or `~`) loaded with `AutoModel.from_pretrained`. Relative
    paths are relative to the spec file."""
    config: dict[str, Any] | None = None
    """An inline transformers config (must include `model_type`): builds the model untrained,
    with `AutoConfig.for_model`. With `pretrained`, overrides fields of the pretrained config."""
    pooling: Literal["cls", "mean", "max", "pooler", "none"] = "cls"
    """Sequence to vector: first token, masked mean, masked max, or the model's pooler output
    (BERT's `pooler_output`, as in Keras examples); `none` keeps the sequence `(B, T, D)` of
    hidden states (for a `cross_attention` fusion). Audio: over time frames; waveform models
    (wav2vec2, ...) have no CLS token and default to `mean`."""
    accepts = frozenset({TOKENS, AUDIO})

    @model_validator(mode="after")
    def _source(self):
        if self.pretrained is None and self.config is None:
            raise ValueError("a transformer needs `pretrained` or `config` — give `pretrained` (a hub "
                             "name or local directory) or an inline `config` with `model_type`")
        return self

    def resolved_config(self, ctx) -> tuple[dict | None, str]:
        """The transformers config as a dict if known offline, and where it came from."""
        cfg = None
        where = "inline"
        if self.pretrained is not None:
            path, where = hf.find_config(self.pretrained, getattr(ctx, "base_dir", None))
            if where in ("local", "cache"):
                cfg = hf.read_config(path)
                if cfg is None:
                    ctx.report("E-FILE", ("pretrained",), f"cannot read {path}", "the directory must hold a "
                               "transformers config.json (save it with model.save_pretrained)")
                    return None, "broken"
            elif where == "missing-local":
                ctx.report("E-FILE", ("pretrained",), f"no config.json in '{self.pretrained}' (looked in {path})",
                           "fix the path (relative to the spec file), or save the model there with "
                           "save_pretrained")
                return None, where
            else:
                cfg, where = self._hub_config(ctx)
        if self.config is not None:
            cfg = {**(cfg or {}), **self.config}
        return cfg, where

    def _hub_config(self, ctx) -> tuple[dict | None, str]:
        """A hub model not in the cache: its config.json from the hub with `validate --online`, else deferred."""
        from .. import hub

        why = ""
        if hub.lookups_enabled():
            path, why = hub.fetch_config(self.pretrained)
            cfg = hf.read_config(path) if path is not None else None
            if cfg is not None:
                return cfg, "hub"
            why = why or f"its config.json ({path}) is not a JSON object"
        if self.config is None or hf.width_of(self.config) is None:
            if why:
                ctx.report("N-DEFERRED", ("pretrained",), f"'{self.pretrained}' could not be looked up on the "
                           f"hub: {why}; its width is deferred to build", "check the name and the network "
                           "(HF_ENDPOINT, proxy), or give a local directory", severity=NOTE)
            else:
                ctx.report("N-DEFERRED", ("pretrained",), f"'{self.pretrained}' is not a local directory "
                           "and not in the local Hugging Face cache: its width is deferred to build (where "
                           "it is downloaded)", "run `archspec validate --online` to read its config.json "
                           "from the hub, or `archspec fetch` to download it, to check shapes now", severity=NOTE)
        return None, "unknown"

    def infer(self, ins, ctx) -> Shape:
        cfg, where = self.resolved_config(ctx)
        from .hf_check import check_inline_config

        check_inline_config(self.config, (cfg or {}).get("model_type"), ctx)
        from .hf_audio import AUDIO_TYPES, infer_audio

        if ins and ins[0].kind == AUDIO:
            return infer_audio(self, cfg, where, ins, ctx)
        if (cfg or {}).get("model_type") in AUDIO_TYPES:
            ctx.report("E-MODALITY", ("input",), f"model type '{cfg['model_type']}' reads audio, but "
                       f"'{self.input}' gives token ids", "read an `audio` input, or use a text model")
            return Shape(FEATURES, (hf.width_of(cfg),))
        width = None
        if cfg is not None:
            if "model_type" not in cfg and where == "inline":
                ctx.report("E-SCHEMA-MISSING", ("config", "model_type"), "an inline transformer config needs "
                           "`model_type`", "add e.g. `model_type: bert`")
            width = hf.width_of(cfg)
            if width is None and where == "inline":
                ctx.report("E-SCHEMA-MISSING", ("config", "hidden_size"), "cannot tell the encoder's width "
                           "from its config", "add `hidden_size`")
            heads = cfg.get("num_attention_heads", cfg.get("n_heads"))
            if isinstance(width, int) and isinstance(heads, int) and heads > 0 and width % heads:
                ctx.report("E-SHAPE", ("config",), f"hidden size {width} is not divisible by {heads} attention heads",
                           "choose a hidden size that is a multiple of the number of heads")
            maxpos = cfg.get("max_position_embeddings")
            if isinstance(maxpos, int) and ins and ins[0].dims and ins[0].dims[0] > maxpos:
                ctx.report("E-SHAPE", ("input",), f"the input's max_length {ins[0].dims[0]} exceeds the model's "
                           f"max_position_embeddings {maxpos}", f"set `max_length` ≤ {maxpos} on the text input")
            mtype = cfg.get("model_type")
            if self.pooling == "pooler" and isinstance(mtype, str) and mtype not in hf.POOLER_TYPES:
                ctx.report("E-POOLING", ("pooling",), f"model type '{mtype}' has no pooler output",
                           "use `pooling: cls` or `mean`")
        if self.pooling == "none":
            return Shape(SEQUENCE, (ins[0].dims[0] if ins and ins[0].dims else None, width))
        return Shape(FEATURES, (width,))
