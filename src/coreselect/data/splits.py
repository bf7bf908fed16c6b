"""Seeded, class-stratified splits."""

from __future__ import annotations

import torch
from torch import Tensor

from coreselect.errors import InvalidInputError


def stratified_split(targets: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Split indices into ``(kept, held_out)``, holding out ``fraction`` of every class.

    Each class contributes ``round(fraction · n_c)`` examples to the held-out part; both parts are sorted.
    """
    if not 0.0 <= fraction < 1.0:
        raise InvalidInputError(f"validation fraction must lie in [0, 1), got {fraction}")
    targets = targets.cpu()
    generator = torch.Generator().manual_seed(seed)
    held_out = []
    for c in torch.unique(targets):
        members = torch.nonzero(targets == c).squeeze(1)
        n_out = round(fraction * len(members))
        held_out.append(members[torch.randperm(len(members), generator=generator)[:n_out]])
    mask = torch.zeros(len(targets), dtype=torch.bool)
    if held_out:
        mask[torch.cat(held_out)] = True
    return torch.nonzero(~mask).squeeze(1), torch.nonzero(mask).squeeze(1)
