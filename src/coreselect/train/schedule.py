"""Optimisers, and learning-rate schedules that follow the share of the budget spent.

A schedule is a function of progress p ∈ [0, 1] (examples back-propagated / budget), so a budgeted run
gets the full run's schedule compressed to its length, whatever batch sizes the strategy yields.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from coreselect.train.config import TrainConfig

ONECYCLE_START_DIVISOR = 25.0  # initial LR = peak / 25, as in the one-cycle policy
ONECYCLE_FINAL_DIVISOR = 1e4  # final LR = initial / 1e4
STEP_MILESTONES = (0.5, 0.75)  # ×0.1 at half and three quarters of the run


def make_optimizer(parameters: Iterable[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        parameters,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
    )


def _cosine(start: float, end: float, t: float) -> float:
    """Half-cosine from ``start`` (t = 0) to ``end`` (t = 1)."""
    return end + (start - end) * (1.0 + math.cos(math.pi * t)) / 2.0


def lr_factor(schedule: str, progress: float, warmup: float) -> float:
    """Multiplier of the peak LR at ``progress`` through the run."""
    p = min(max(progress, 0.0), 1.0)
    if schedule == "onecycle":
        start = 1.0 / ONECYCLE_START_DIVISOR
        final = start / ONECYCLE_FINAL_DIVISOR
        if warmup > 0 and p < warmup:
            return _cosine(start, 1.0, p / warmup)
        return _cosine(1.0, final, (p - warmup) / (1.0 - warmup))
    if warmup > 0 and p < warmup:
        return p / warmup
    if schedule == "cosine":
        return _cosine(1.0, 0.0, (p - warmup) / (1.0 - warmup))
    if schedule == "step":
        return 0.1 ** sum(p >= m for m in STEP_MILESTONES)
    return 1.0


def set_learning_rate(optimizer: torch.optim.Optimizer, config: TrainConfig, progress: float) -> float:
    lr = config.lr * lr_factor(config.schedule, progress, config.warmup)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr
