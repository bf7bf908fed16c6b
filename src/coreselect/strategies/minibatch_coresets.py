"""Mini-batch coresets from random subsets (CREST, and stable coresets built on it).

Each of P class-stratified random subsets of the pool yields one weighted coreset of a mini-batch (the run's
batch size): per-class facility location on the subset's gradient proxies, weights = cluster sizes within the
subset. A subset holds ``random_subset_size`` of the pool but at least ``min_subset_batches`` mini-batches, so
that on small data a coreset is still a choice and training sees full batches.
The union of the P coresets, weights normalised to mean 1, is what training draws batches from. The P problems
are solved together (one batched greedy over every class of every subset) while their classes are small, else
one at a time, dealt across ranks in a distributed job.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor

from coreselect.strategies.registry import StrategyParams
from coreselect.submodular import normalise_weights, per_class_facility_locations


class SubsetParams(StrategyParams):
    """The random subsets mini-batch coresets are selected from."""

    random_subset_size: float = Field(0.01, gt=0, le=1, description="each random subset: this share of the pool")
    min_subset_batches: float = Field(2.0, ge=1, description="each random subset: at least this many mini-batches")

    def subset_size(self, pool: int, batch_size: int) -> int:
        """Points per random subset for a pool of ``pool`` examples."""
        return min(pool, max(math.ceil(self.random_subset_size * pool), math.ceil(self.min_subset_batches
                                                                                   * batch_size)))


def class_members(pool: Tensor, targets: Tensor) -> list[Tensor]:
    """The ``pool`` indices of each class present, ascending (one stable sort)."""
    labels = targets.cpu()[pool]
    order = torch.sort(labels, stable=True).indices
    counts = torch.bincount(labels)
    return [pool[group] for group in order.split(counts[counts > 0].tolist())] if len(pool) else []


def uniform_draws(n: int, k: int, count: int, generator: torch.Generator) -> Tensor:
    """``count`` independent uniform draws of ``k`` distinct positions of ``range(n)`` (rows of a (count, k) tensor,
    in random order). While k² ≤ n, i.i.d. positions with every row holding a repeat drawn again (given no repeat,
    a row is a uniform ordered draw without replacement; a row is kept with probability above e^(−1/2)): a few
    tensor operations instead of a permutation of all n per row; else each row is the head of a permutation."""
    if not 0 <= k <= n:
        raise ValueError(f"cannot draw {k} distinct positions of {n}")
    if k * k > n:
        return torch.stack([torch.randperm(n, generator=generator)[:k] for _ in range(count)]) if count else \
            torch.zeros(0, k, dtype=torch.long)
    draws = torch.randint(n, (count, k), generator=generator)
    while True:
        ordered = draws.sort(1).values
        repeats = (ordered[:, 1:] == ordered[:, :-1]).any(1)
        if not repeats.any():
            return draws
        draws[repeats] = torch.randint(n, (int(repeats.sum()), k), generator=generator)


def stratified_subsets(members: list[Tensor], size: int, count: int, generator: torch.Generator) -> list[Tensor]:
    """``count`` random subsets of a pool given by its :func:`class_members`, each ⌈size/C⌉ per class without
    replacement (a class with fewer members gives all of them), drawn independently (:func:`uniform_draws`)."""
    per_class = math.ceil(size / max(len(members), 1))
    drawn = [g[uniform_draws(len(g), min(per_class, len(g)), count, generator)] for g in members]  # (count, k_c)
    return list(torch.cat(drawn, dim=1).unbind(0)) if drawn else [torch.zeros(0, dtype=torch.long)] * count


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
    parts = [slice(offsets[i], offsets[i + 1]) for i in range(len(subsets))]
    solved = per_class_facility_locations([proxies[part] for part in parts], [targets[part] for part in parts],
                                          [min(size, len(subset)) for subset in subsets], similarity=similarity)
    return (torch.cat([subset[c.indices.cpu()] for subset, c in zip(subsets, solved, strict=True)]),
            normalise_weights(torch.cat([c.weights.cpu() for c in solved]).float()))  # weights: cluster sizes
