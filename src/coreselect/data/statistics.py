"""Per-channel standardisation statistics from one streaming pass, so that data read on demand and the same
data held in memory are standardised alike."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor


def channel_statistics(blocks: Iterable[np.ndarray], scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """Mean and (unbiased) standard deviation of ``block / scale`` over every axis but axis 1 (channels, or
    features for rows of vectors), accumulated in float64 block by block; shaped to broadcast over a row."""
    total = squares = None
    count, row_ndim = 0, 1
    for block in blocks:
        if len(block) == 0:
            continue
        row_ndim = block.ndim - 1
        values = torch.from_numpy(np.array(block, dtype=np.float64)) / scale  # a writable float64 copy
        values = values.reshape(len(values), values.shape[1] if values.ndim > 1 else 1, -1).transpose(0, 1)
        values = values.reshape(values.shape[0], -1)
        block_total, block_squares = values.sum(1), (values * values).sum(1)
        total = block_total if total is None else total + block_total
        squares = block_squares if squares is None else squares + block_squares
        count += values.shape[1]
    if total is None or squares is None:
        return torch.zeros(1), torch.ones(1)
    mean = total / count
    variance = (squares - count * mean * mean).clamp_min(0) / max(count - 1, 1)
    shape = (len(mean), *[1] * max(row_ndim - 1, 0))
    return mean.float().reshape(shape), variance.sqrt().clamp_min(1e-8).float().reshape(shape)
