"""Mini-batch coresets from random subsets (CREST, and stable coresets built on it).

Each of P class-stratified random subsets of the pool yields one weighted coreset of about a mini-batch:
per-class facility location on the subset's gradient proxies, weights = cluster sizes within the subset.
The union of the P coresets, weights normalised to mean 1, is what training draws batches from. The P problems
are independent: in a distributed job they are dealt across ranks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from coreselect.distributed import world
from coreselect.submodular import normalise_weights, per_class_facility_location


def stratified_subsets(pool: Tensor, targets: Tensor, fraction: float, count: int,
                       generator: torch.Generator) -> list[Tensor]:
    """``count`` random subsets of the ``pool`` indices, each ⌈fraction·|pool|/C⌉ per class without replacement
    (a class with fewer members gives all of them)."""
    targets = targets.cpu()
    classes = torch.unique(targets[pool])
    per_class = math.ceil(fraction * len(pool) / len(classes))
    members = [pool[targets[pool] == c] for c in classes]
    return [
        torch.cat([g[torch.randperm(len(g), generator=generator)[:per_class]] for g in members])
        for _ in range(count)
    ]


def minibatch_coresets(proxies: Tensor, subsets: list[Tensor], targets: Tensor, size: int,
                       similarity: str = "max_minus") -> tuple[Tensor, Tensor]:
    """One coreset of ``size`` (at most the subset) from each subset; ``proxies`` and ``targets`` hold the rows
    of the subsets concatenated in order. Returns training indices and weights (mean 1 over the union)."""
    if proxies.shape[0] != sum(len(s) for s in subsets):
        raise ValueError(f"{proxies.shape[0]} proxy rows for subsets of {sum(len(s) for s in subsets)} points")
    targets = targets.cpu()
    offsets = [0]
    for subset in subsets:
        offsets.append(offsets[-1] + len(subset))

    def solve(i: int) -> tuple[Tensor, Tensor]:
        part = slice(offsets[i], offsets[i + 1])
        coreset = per_class_facility_location(proxies[part], targets[part], min(size, len(subsets[i])),
                                              similarity=similarity)
        return subsets[i][coreset.indices.cpu()], coreset.weights.cpu()  # weights: cluster sizes in the subset

    solved = world().share_work(solve, range(len(subsets)))  # independent problems, dealt across ranks
    return torch.cat([c for c, _ in solved]), normalise_weights(torch.cat([w for _, w in solved]).float())
