"""Optimizers and learning-rate schedules from the `training` section. A schedule is a pure ``lr_at(step)``."""

from __future__ import annotations

import math

import torch


def make_optimizer(cfg, params) -> torch.optim.Optimizer:
    """The optimizer named by ``training.optimizer`` over the trainable ``params``."""
    params = [p for p in params if p.requires_grad]
    if cfg.type == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.type == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.type == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    raise ValueError(cfg.type)


def lr_at(step: int, peak: float, total_steps: int, schedule) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``total_steps``.

    Example:
        >>> from archspec.spec.training import CosineScheduleConfig
        >>> s = CosineScheduleConfig(type="cosine", warmup_steps=2)
        >>> [round(lr_at(i, 1.0, 6, s), 3) for i in range(6)]
        [0.5, 1.0, 1.0, 0.854, 0.5, 0.146]
    """
    warm = schedule.warmup_steps
    if warm and step < warm:
        return peak * (step + 1) / warm
    if schedule.type == "constant":
        return peak
    span = max(1, total_steps - warm)
    progress = min(1.0, (step - warm) / span)
    if schedule.type == "cosine":
        return schedule.min_lr + (peak - schedule.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule.type == "linear":
        return peak * (1 - progress)
    raise ValueError(schedule.type)
