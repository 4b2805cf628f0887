"""Plain building blocks. Modules take explicit ints and submodules, never a config."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "softmax": lambda: nn.Softmax(dim=-1),
    "linear": nn.Identity,
}


def activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def norm1d(kind: str, width: int) -> nn.Module:
    if kind == "batch_norm":
        return nn.BatchNorm1d(width)
    if kind == "layer_norm":
        return nn.LayerNorm(width)
    return nn.Identity()


class L2Norm(nn.Module):
    """Scale each row to unit L2 norm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)


def dense_stack(in_width: int, widths: list[int], act: str, dropout: float, norm: str,
                activate_last: bool = True) -> tuple[nn.Sequential, int]:
    """Linear → norm → activation → dropout per layer (Keras `Dense(w, activation)` + `Dropout`).

    Returns:
        the stack and its output width.
    """
    layers: list[nn.Module] = []
    width = in_width
    for i, w in enumerate(widths):
        layers.append(nn.Linear(width, w))
        width = w
        if i < len(widths) - 1 or activate_last:
            if norm != "none":
                layers.append(norm1d(norm, w))
            layers.append(activation(act))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers), width


def masked_pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Pool `(B, T, D)` over T where `mask` `(B, T)` is 1 (padding ignored)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    if how == "mean":
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
    if how == "max":
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).amax(1)
    if how == "sum":
        return (hidden * m).sum(1)
    raise ValueError(how)


def pool_output(out, pooling: str, mask_of=None) -> torch.Tensor:
    """A transformers output pooled as ``pooling`` says: ``pooler`` output, the ``none`` (B, T, D)
    sequence, the ``cls`` (first) position, or the ``mean``/``max`` over the positions where
    ``mask_of(T)`` (a (B, T) mask for T positions; ``None``: every position) is 1."""
    if pooling == "pooler":
        return out.pooler_output
    hidden = out.last_hidden_state  # (B, T, D)
    if pooling == "none":
        return hidden
    if pooling == "cls":
        return hidden[:, 0]
    mask = mask_of(hidden.shape[1]) if mask_of is not None else None
    if mask is None:
        return hidden.mean(1) if pooling == "mean" else hidden.amax(1)
    return masked_pool(hidden, mask, pooling)
