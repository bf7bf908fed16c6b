"""Augmentation of training batches: applied to the inputs of a training step only, never to selection forwards.

An augmentation is any callable ``(inputs, generator) -> inputs`` on a batch; ``generator`` (CPU) is the
trainer's own stream, saved in checkpoints, so a resumed run draws the same augmentations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from coreselect.errors import UnknownNameError

Augmentation = Callable[[Tensor, torch.Generator], Tensor]


def crop_flip(inputs: Tensor, generator: torch.Generator, padding: int = 4) -> Tensor:
    """CIFAR-style: each image of the batch ``(B, C, H, W)`` zero-padded by ``padding``, cropped back to H×W at a
    uniform offset, and mirrored left-right with probability 1/2 — one gather for the whole batch."""
    if inputs.ndim != 4:
        raise ValueError(f"crop-flip augments image batches (B, C, H, W), got shape {tuple(inputs.shape)}")
    b, _, h, w = inputs.shape
    dy, dx = (torch.randint(0, 2 * padding + 1, (2, b), generator=generator)).to(inputs.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(inputs.device)
    padded = F.pad(inputs, (padding, padding, padding, padding))
    rows = dy[:, None] + torch.arange(h, device=inputs.device)
    columns = torch.arange(w, device=inputs.device).expand(b, w)
    columns = dx[:, None] + torch.where(flip[:, None], w - 1 - columns, columns)
    batch = torch.arange(b, device=inputs.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], columns[:, None, :]].permute(0, 3, 1, 2)


AUGMENTATIONS: dict[str, Augmentation | None] = {"none": None, "crop-flip": crop_flip}


def augmentation(name: str) -> Augmentation | None:
    """The augmentation registered as ``name`` (None for ``none``)."""
    if name not in AUGMENTATIONS:
        raise UnknownNameError("augmentation", name, AUGMENTATIONS)
    return AUGMENTATIONS[name]
