"""Torch builders of the encoders (configs live in :mod:`archspec.spec.encoders`)."""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import BuildError
from ..registry import register_builder
from ..shapes import AUDIO
from .layers import activation, dense_stack, masked_pool, pool_output


class MLP(nn.Sequential):
    """Dense layers `(B, D_in) -> (B, D_out)`; a plain Sequential, so no extra module call per step."""

    def __init__(self, in_width: int, widths: list[int], act: str, dropout: float, norm: str, activate_last: bool):
        stack, self_width = dense_stack(in_width, widths, act, dropout, norm, activate_last)
        super().__init__(*stack)
        self.out_width = self_width


@register_builder("encoder", "mlp")
def build_mlp(cfg, in_shapes, ctx) -> nn.Module:
    return MLP(ctx.width(in_shapes[0]), list(cfg.layers), cfg.activation, cfg.dropout, cfg.norm, cfg.activate_last)


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register_builder("encoder", "identity")
def build_identity(cfg, in_shapes, ctx) -> nn.Module:
    return Identity()


class Embedding(nn.Module):
    def __init__(self, rows: int, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(rows, dim)

    def forward(self, index: torch.Tensor) -> torch.Tensor:  # (B,) -> (B, dim)
        return self.embedding(index)


@register_builder("encoder", "embedding")
def build_embedding(cfg, in_shapes, ctx) -> nn.Module:
    return Embedding(ctx.cardinality(cfg.input), cfg.dim)


class EmbeddingBag(nn.Module):
    """Token embeddings pooled over the unmasked positions."""

    def __init__(self, vocab: int, dim: int, pooling: str):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, padding_idx=0)
        self.pooling = pooling

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, T), (B, T) -> (B, dim)
        if self.pooling == "none":
            return self.embedding(ids)  # (B, T, dim); the mask travels as "<node>.mask"
        return masked_pool(self.embedding(ids), mask, self.pooling)


@register_builder("encoder", "embedding_bag")
def build_embedding_bag(cfg, in_shapes, ctx) -> nn.Module:
    return EmbeddingBag(cfg.vocab_size or ctx.vocab_size(cfg.input), cfg.dim, cfg.pooling)


class CNN(nn.Module):
    """conv → norm → act → 2x2 max-pool per stage (no pool after the last), then global pooling."""

    def __init__(self, in_channels: int, channels: list[int], kernel: int, act: str, norm: str, pool: str):
        super().__init__()
        stages: list[nn.Module] = []
        c = in_channels
        for i, out in enumerate(channels):
            stages.append(nn.Conv2d(c, out, kernel, padding=kernel // 2, bias=norm == "none"))
            if norm == "batch_norm":
                stages.append(nn.BatchNorm2d(out))
            stages.append(activation(act))
            if i < len(channels) - 1:
                stages.append(nn.MaxPool2d(2))
            c = out
        self.features = nn.Sequential(*stages)
        self.patches = pool == "none"
        self.pool = nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.AdaptiveMaxPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, channels[-1])
        if self.patches:  # the last feature map as a sequence of patches, row by row
            return self.features(x).flatten(2).transpose(1, 2)  # (B, H' * W', channels[-1])
        return self.pool(self.features(x)).flatten(1)


@register_builder("encoder", "cnn")
def build_cnn(cfg, in_shapes, ctx) -> nn.Module:
    return CNN(in_shapes[0].dims[0], list(cfg.channels), cfg.kernel_size, cfg.activation, cfg.norm, cfg.global_pool)


class Backbone(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, D)
        out = self.body(x)
        return out.flatten(1)


def _strip_classifier(name: str, m: nn.Module) -> nn.Module:
    """Remove the classification layer(s) so the model outputs pooled features."""
    if name.startswith(("vgg", "alexnet")):
        m.avgpool = nn.AdaptiveAvgPool2d(1)
        m.classifier = nn.Flatten(1)
    elif name.startswith("squeezenet"):
        m.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    elif name.startswith("convnext"):
        m.classifier[-1] = nn.Identity()
    elif name.startswith("maxvit"):
        m.classifier = nn.Sequential(*list(m.classifier)[:3])
    elif hasattr(m, "fc") and isinstance(m.fc, nn.Module):
        m.fc = nn.Identity()
    elif hasattr(m, "heads"):
        m.heads = nn.Identity()
    elif hasattr(m, "head") and isinstance(m.head, nn.Linear):
        m.head = nn.Identity()
    elif hasattr(m, "classifier"):
        m.classifier = nn.Identity()
    else:
        raise BuildError(f"torchvision model '{name}': cannot find its classifier to remove")
    return m


def _named_weights(name: str, weights: str):
    """torchvision's weights enum member, and whether its file is already in the torch hub cache.

    Raises:
        BuildError: unknown weights, or offline mode with the file not cached (says how to get it).
    """
    import torchvision

    from .. import hub

    try:
        enum = torchvision.models.get_model_weights(name)
        w = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except (KeyError, ValueError) as exc:
        raise BuildError(f"torchvision model '{name}' has no weights '{weights}'") from exc
    file = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(w.url)
    cached = file.is_file()
    if not cached and hub.offline():
        raise BuildError(f"weights {name}.{weights} are not in the torch hub cache ({file}) and offline mode is on "
                         f"({hub.offline_reason()}) — run `archspec fetch SPEC` where network is allowed and copy "
                         f"{file.parent} to this machine (set TORCH_HOME), or give `weights_path` to a local file")
    return w, cached


def _architecture_of(name: str, weights: str) -> dict:
    """The constructor arguments torchvision derives from named weights (read from the enum, no download)."""
    import torchvision

    enum = torchvision.models.get_model_weights(name)
    meta = (enum.DEFAULT if weights == "DEFAULT" else enum[weights]).meta
    if name in ("googlenet", "inception_v3"):
        return {"transform_input": True, "aux_logits": False, "init_weights": False}
    if name.startswith("vit_"):
        return {"image_size": meta["min_size"][0]}
    if name.startswith("maxvit"):
        return {"input_size": meta["min_size"]}
    return {}


@contextlib.contextmanager
def _weights_only_state_dicts():
    """torchvision loads its weight files with ``torch.load(weights_only=False)``; a file in the cache
    could be anything, so load it as tensors only (no pickle code runs)."""
    from torchvision.models import _api

    original = _api.load_state_dict_from_url
    _api.load_state_dict_from_url = functools.partial(original, weights_only=True)
    try:
        yield
    finally:
        _api.load_state_dict_from_url = original


@register_builder("encoder", "torchvision")
def build_torchvision(cfg, in_shapes, ctx) -> nn.Module:
    import torchvision

    if cfg.model not in torchvision.models.list_models():
        raise BuildError(f"torchvision has no model '{cfg.model}'")
    kwargs = {}
    if cfg.model in ("googlenet", "inception_v3") and not cfg.weights:
        kwargs = {"aux_logits": False, "init_weights": True}
    if cfg.weights and getattr(ctx, "weights_from_run", None) is not None:
        # a trained run's checkpoint gives every weight: the architecture the named weights imply, no file
        weights, cached, kwargs = None, True, _architecture_of(cfg.model, cfg.weights)
    else:
        weights, cached = _named_weights(cfg.model, cfg.weights) if cfg.weights else (None, True)
    try:
        # named weights not in the cache are downloaded here by torchvision (progress bar, hash checked)
        with _weights_only_state_dicts():
            model = torchvision.models.get_model(cfg.model, weights=weights, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError; a bad hash a RuntimeError
        if weights is None:
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        what = "download" if not cached else "load the cached"
        raise BuildError(f"cannot {what} weights {cfg.model}.{cfg.weights} ({weights.url}): {first} — check the "
                         "network, or run `archspec fetch SPEC` where network is allowed and copy the torch hub "
                         f"cache ({torch.hub.get_dir()}) here, or give `weights_path`") from None
    if getattr(model, "aux_logits", False):
        # named weights come with auxiliary classifiers (torchvision insists on aux_logits=True);
        # in train mode they make forward return a tuple, so drop them as torchvision itself does
        model.aux_logits = False
        for aux in ("AuxLogits", "aux1", "aux2"):
            if hasattr(model, aux):
                setattr(model, aux, None)
    if cfg.weights_path:
        state = _load_state_dict(ctx.resolve_path(cfg.weights_path))
        if cfg.model in ("googlenet", "inception_v3"):  # official files include the auxiliary heads
            state = {k: v for k, v in state.items() if not k.startswith(("AuxLogits.", "aux1.", "aux2."))}
        model.load_state_dict(state)
    return Backbone(_strip_classifier(cfg.model, model))


def _load_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise BuildError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file to the user
        raise BuildError(f"cannot read weights {path}: {exc}") from exc


class HFEncoder(nn.Module):
    """A transformers encoder pooled to one vector per example."""

    def __init__(self, model: nn.Module, pooling: str):
        super().__init__()
        self.model = model
        self.pooling = pooling

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, T), (B, T) -> (B, D)
        return pool_output(self.model(input_ids=ids, attention_mask=mask), self.pooling, lambda t: mask)


def _hf_reference(cfg, ctx) -> str:
    ref = cfg.pretrained
    if ref.startswith((".", "/", "~")):
        return str(ctx.resolve_path(ref))
    return ref


#: from_pretrained options that choose what is downloaded and run; never taken from a spec's `config`
_LOADER_KEYS = frozenset({"trust_remote_code", "revision", "code_revision", "cache_dir", "proxies", "token",
                          "use_auth_token", "local_files_only", "force_download", "subfolder", "_commit_hash",
                          "use_safetensors", "mirror"})


@register_builder("encoder", "transformer")
def build_transformer(cfg, in_shapes, ctx) -> nn.Module:
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    from .. import hub

    hf_logging.set_verbosity_error()
    overrides = dict(cfg.config or {})
    from ..spec.hf import POOLER_TYPES

    steering = sorted(set(overrides) & _LOADER_KEYS)
    if steering:
        raise BuildError(f"`config` may set model values only, not how files are loaded: remove "
                         f"{', '.join(steering)} (trust_remote_code is never taken from a spec)")
    try:
        if cfg.pretrained is None:
            model_type = overrides.pop("model_type")
            hf_cfg = AutoConfig.for_model(model_type, **overrides)
            pool_kw = {"add_pooling_layer": False} if model_type in POOLER_TYPES and cfg.pooling != "pooler" else {}
            model = AutoModel.from_config(hf_cfg, **pool_kw)
        else:
            ref = _hf_reference(cfg, ctx)
            overrides.pop("model_type", None)
            # a hub name is downloaded on first use into the Hugging Face cache (safetensors preferred,
            # transformers' default); offline, local_files_only fails at once instead of retrying.
            # trust_remote_code is never taken from a spec.
            load_kw = {"local_files_only": hub.offline(), "trust_remote_code": False}
            saved = ctx.saved_config() if hasattr(ctx, "saved_config") else None
            hf_cfg = AutoConfig.from_pretrained(str(saved) if saved else ref, **load_kw)
            # the spec's `config` overrides config values only: applied after loading, so a key such as
            # `revision`, `cache_dir`, `proxies` or `trust_remote_code` can never steer the download
            hf_cfg.update(overrides)
            pool_kw = ({"add_pooling_layer": False}
                       if hf_cfg.model_type in POOLER_TYPES and cfg.pooling != "pooler" else {})
            if getattr(ctx, "weights_from_run", None) is not None:
                # a trained run's checkpoint gives every weight: the architecture only, nothing downloaded
                model = AutoModel.from_config(hf_cfg, **pool_kw)
            else:
                model = AutoModel.from_pretrained(ref, config=hf_cfg, **load_kw, **pool_kw)
    except (OSError, ValueError, KeyError, TypeError, AssertionError, RuntimeError) as exc:
        where = cfg.pretrained or (cfg.config or {}).get("model_type")
        if cfg.pretrained and hub.is_hub_name(cfg.pretrained):
            raise BuildError(f"cannot build transformer '{where}': {hub.load_failure(cfg.pretrained, exc)}") from None
        raise BuildError(f"cannot build transformer '{where}': {str(exc).splitlines()[0]} — give a local "
                         "directory saved with save_pretrained, or an inline `config` to build it untrained") from None
    if getattr(model.config, "is_encoder_decoder", False):
        # T5, BART, ...: the features are the encoder's; the decoder would need its own inputs
        model = model.get_encoder()
    if in_shapes and in_shapes[0].kind == AUDIO:  # a waveform: feature extractor, audio model, frame pooling
        from .hf_audio import wrap_audio

        return wrap_audio(cfg, model, _hf_reference(cfg, ctx) if cfg.pretrained else None, ctx,
                          {"local_files_only": hub.offline(), "trust_remote_code": False})
    return HFEncoder(model, cfg.pooling)
