"""No-grad forward passes over many examples, in chunks, with optional penultimate features; under DDP each
rank forwards its contiguous part of the rows and the outputs are gathered (every rank gets all of them)."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from coreselect.data.examples import Examples
from coreselect.distributed import world
from coreselect.models.features import PenultimateFeatures


@dataclass(frozen=True)
class ForwardOutputs:
    logits: Tensor
    features: Tensor | None = None


def forward_in_batches(
    model: nn.Module,
    inputs: Tensor | Examples,
    *,
    indices: Tensor | None = None,
    batch_size: int = 256,
    with_features: bool = False,
    train_mode: bool = False,
    dtype: torch.dtype | None = None,
) -> ForwardOutputs:
    """Logits (and penultimate features) of ``inputs`` (a tensor, or a dataset's examples at ``indices``, default
    all), computed ``batch_size`` rows at a time; under autocast to ``dtype`` (e.g. ``torch.bfloat16``) if given,
    the outputs still fp32.

    Runs in eval mode unless ``train_mode``; the model's mode is restored afterwards. Inputs are moved to
    the model's device chunk by chunk, so they may stay on the CPU; a dataset read on demand streams its
    inputs (its workers read ahead). In a distributed job every rank must call it with the same arguments:
    each forwards ``1/size`` of the rows, and the outputs are gathered.
    """
    group = world()
    n = (inputs.shape[0] if isinstance(inputs, Tensor) else len(inputs)) if indices is None else len(indices)
    start, stop = group.bounds(n) if group.splits(n) else (0, n)
    if isinstance(inputs, Tensor):
        rows = inputs[start:stop] if indices is None else inputs[indices[start:stop].to(inputs.device)]
        chunks: Iterable[Tensor] = (rows[i : i + batch_size] for i in range(0, rows.shape[0], batch_size))
    else:
        rows_of = (None if stop - start == n else torch.arange(start, stop)) if indices is None else indices[start:stop]
        chunks = inputs.chunks(batch_size, rows_of)
    part = _forward(model, chunks, with_features, train_mode, dtype)
    if (start, stop) == (0, n):
        return part
    return ForwardOutputs(group.gather_parts(part.logits, n),
                          None if part.features is None else group.gather_parts(part.features, n))


@torch.no_grad()
def _forward(model: nn.Module, chunks: Iterable[Tensor], with_features: bool, train_mode: bool,
             dtype: torch.dtype | None) -> ForwardOutputs:
    was_training = model.training
    model.train(train_mode)
    device = next(model.parameters()).device
    logits, features = [], []
    autocast = nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)
    try:
        with PenultimateFeatures(model) if with_features else nullcontext() as hook, autocast:
            for chunk in chunks:
                logits.append(model(chunk.to(device, non_blocking=True)).float())
                if hook is not None:
                    features.append(hook.value.float())
    finally:
        model.train(was_training)
    if not logits:
        empty = torch.empty(0, 0, device=device)
        return ForwardOutputs(empty, empty if with_features else None)
    return ForwardOutputs(torch.cat(logits), torch.cat(features) if with_features else None)
