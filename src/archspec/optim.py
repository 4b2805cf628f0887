"""Optimizers and learning-rate schedules from the `training` section, built through the registries.

An optimizer builder is ``fn(cfg, params) -> torch.optim.Optimizer``; a schedule builder is
``fn(cfg, step, total_steps, peak) -> lr`` for the steps after warmup (``step`` counted from the
end of warmup, ``total_steps`` the steps left after it). Plugins register theirs with
:func:`archspec.registry.register_builder` under the name their config is registered with.
"""

from __future__ import annotations

import math

import torch

from .registry import REGISTRIES, register_builder


def make_optimizer(cfg, params) -> torch.optim.Optimizer:
    """The optimizer named by ``training.optimizer`` over the trainable ``params``."""
    params = [p for p in params if p.requires_grad]
    return REGISTRIES["optimizer"].builders[cfg.type](cfg, params)


@register_builder("optimizer", "adam")
def build_adam(cfg, params):
    return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


@register_builder("optimizer", "adamw")
def build_adamw(cfg, params):
    return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


@register_builder("optimizer", "sgd")
def build_sgd(cfg, params):
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


def lr_at(step: int, peak: float, total_steps: int, schedule) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``total_steps``.

    Linear warmup (``warmup_steps``, when the schedule has it) is shared by every schedule; the
    schedule's builder gives the rate after it.

    Example:
        >>> from archspec.spec.training import CosineScheduleConfig
        >>> s = CosineScheduleConfig(type="cosine", warmup_steps=2)
        >>> [round(lr_at(i, 1.0, 6, s), 3) for i in range(6)]
        [0.5, 1.0, 1.0, 0.854, 0.5, 0.146]
    """
    warm = getattr(schedule, "warmup_steps", 0) or 0
    if warm and step < warm:
        return peak * (step + 1) / warm
    return REGISTRIES["schedule"].builders[schedule.type](schedule, step - warm, max(1, total_steps - warm), peak)


@register_builder("schedule", "constant")
def constant(cfg, step: int, total_steps: int, peak: float) -> float:
    return peak


@register_builder("schedule", "cosine")
def cosine(cfg, step: int, total_steps: int, peak: float) -> float:
    progress = min(1.0, step / total_steps)
    return cfg.min_lr + (peak - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


@register_builder("schedule", "linear")
def linear(cfg, step: int, total_steps: int, peak: float) -> float:
    return peak * (1 - min(1.0, step / total_steps))
