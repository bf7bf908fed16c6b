"""No-grad forward passes over many examples, in chunks, with optional penultimate features; under DDP each
rank forwards its contiguous part of the rows and the outputs are gathered (every rank gets all of them)."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from coreselect.distributed import world
from coreselect.models.features import PenultimateFeatures


@dataclass(frozen=True)
class ForwardOutputs:
    logits: Tensor
    features: Tensor | None = None


def forward_in_batches(
    model: nn.Module,
    inputs: Tensor,
    *,
    batch_size: int = 256,
    with_features: bool = False,
    train_mode: bool = False,
) -> ForwardOutputs:
    """Logits (and penultimate features) of ``inputs``, computed ``batch_size`` rows at a time.

    Runs in eval mode unless ``train_mode``; the model's mode is restored afterwards. Inputs are moved to
    the model's device chunk by chunk, so they may stay on the CPU. In a distributed job every rank must
    call it with the same ``inputs``: each forwards ``1/size`` of the rows, and the outputs are gathered.
    """
    group = world()
    if group.splits(inputs.shape[0]):
        n = inputs.shape[0]
        start, stop = group.bounds(n)
        part = _forward(model, inputs[start:stop], batch_size, with_features, train_mode)
        return ForwardOutputs(group.gather_parts(part.logits, n),
                              None if part.features is None else group.gather_parts(part.features, n))
    return _forward(model, inputs, batch_size, with_features, train_mode)


@torch.no_grad()
def _forward(model: nn.Module, inputs: Tensor, batch_size: int, with_features: bool,
             train_mode: bool) -> ForwardOutputs:
    was_training = model.training
    model.train(train_mode)
    device = next(model.parameters()).device
    logits, features = [], []
    try:
        with PenultimateFeatures(model) if with_features else nullcontext() as hook:
            for start in range(0, inputs.shape[0], batch_size):
                logits.append(model(inputs[start : start + batch_size].to(device, non_blocking=True)))
                if hook is not None:
                    features.append(hook.value)
    finally:
        model.train(was_training)
    if not logits:
        empty = torch.empty(0, 0, device=device)
        return ForwardOutputs(empty, empty if with_features else None)
    return ForwardOutputs(torch.cat(logits), torch.cat(features) if with_features else None)

