"""Greedy maximisation of facility location F(S) = Σ_i max_{j∈S} s_ij.

Three optimisers over a :class:`~coreselect.submodular.kernel.SimilarityKernel`:

- ``naive``: every remaining candidate's gain is evaluated at every step;
- ``lazy``: exact greedy with stale upper bounds (submodularity), evaluated a batch of top bounds at a
  time so that each step is a few matrix operations; same picks as ``naive`` up to exact ties;
- ``stochastic``: each step evaluates a random sample of ⌈(n/k)·ln(1/ε)⌉ remaining candidates
  (Mirzasoleiman et al., "Lazier than lazy greedy"), (1 − 1/e − ε)-approximate in expectation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from coreselect.errors import InvalidInputError
from coreselect.submodular.kernel import SimilarityKernel

OptimizerName = Literal["lazy", "naive", "stochastic"]
OPTIMIZERS: tuple[str, ...] = ("lazy", "naive", "stochastic")
NAIVE_CHUNK = 4096  # candidates evaluated at once by the naive optimiser


@dataclass(frozen=True)
class GreedyResult:
    """Picks in greedy order, their marginal gains, cluster-size weights, F(S), and each element's cluster.

    ``weights[t]`` counts the ground elements whose most similar pick is ``indices[t]`` (earlier picks win
    exact ties); ``assignment[i]`` is that pick's position t.
    """

    indices: Tensor
    gains: Tensor
    weights: Tensor
    objective: float
    assignment: Tensor


def _gains(kernel: SimilarityKernel, candidates: Tensor, covered: Tensor) -> Tensor:
    """Marginal gains Σ_i max(s_ij − covered_i, 0) of each candidate j."""
    return (kernel.candidate_rows(candidates) - covered).clamp_min_(0.0).sum(1)


def _first_max(values: Tensor) -> int:
    """Position of the maximum, the first one among exact ties."""
    return int(torch.nonzero(values == values.max())[0, 0])


def greedy_facility_location(
    kernel: SimilarityKernel,
    k: int,
    *,
    optimizer: str = "lazy",
    epsilon: float = 0.01,
    generator: torch.Generator | None = None,
    batch: int = 64,
) -> GreedyResult:
    """Select ``k`` of the kernel's ``n`` elements greedily; see the module docstring for the optimisers."""
    n = kernel.n
    if optimizer not in OPTIMIZERS:
        raise InvalidInputError(f"unknown optimizer {optimizer!r}; valid names: {', '.join(OPTIMIZERS)}")
    if not 0 <= k <= n:
        raise InvalidInputError(f"cannot select {k} of {n} elements; the budget must lie in [0, {n}]")
    if not 0.0 < epsilon < 1.0:
        raise InvalidInputError(f"epsilon must lie in (0, 1), got {epsilon}")

    bounds = kernel.initial_gains().clone()  # stale upper bounds of the gains; −inf once picked
    device, dtype = bounds.device, bounds.dtype
    covered = torch.zeros(n, dtype=dtype, device=device)
    assignment = torch.zeros(n, dtype=torch.long, device=device)  # the first pick covers everything
    picks: list[int] = []
    gains: list[float] = []
    sample_size = min(n, math.ceil(n / max(k, 1) * math.log(1.0 / epsilon)))

    for step in range(k):
        if optimizer == "lazy":
            pick, gain = _lazy_step(kernel, bounds, covered, n - step, batch)
        else:
            remaining = torch.nonzero(bounds > -math.inf).squeeze(1)
            if optimizer == "stochastic":
                order = torch.randperm(len(remaining), generator=generator)[:sample_size].to(device)
                remaining = remaining[order].sort().values
            fresh = torch.cat([_gains(kernel, remaining[i : i + NAIVE_CHUNK], covered)
                               for i in range(0, len(remaining), NAIVE_CHUNK)])
            best = _first_max(fresh)
            pick, gain = int(remaining[best]), float(fresh[best])
        row = kernel.candidate_rows(torch.tensor([pick], device=device))[0]
        improved = row > covered
        covered = torch.maximum(row, covered)
        assignment[improved] = step
        bounds[pick] = -math.inf
        picks.append(pick)
        gains.append(gain)

    weights = torch.bincount(assignment[assignment >= 0], minlength=k).to(dtype)
    return GreedyResult(
        indices=torch.tensor(picks, dtype=torch.long, device=device),
        gains=torch.tensor(gains, dtype=dtype, device=device),
        weights=weights,
        objective=float(covered.sum()) if k else 0.0,
        assignment=assignment,
    )


def _lazy_step(kernel: SimilarityKernel, bounds: Tensor, covered: Tensor, remaining: int, batch: int) -> tuple[int, float]:
    """One exact greedy step: refresh the top stale bounds until the best fresh gain beats all others."""
    size = min(batch, remaining)
    while True:
        top = torch.topk(bounds, min(size + 1, len(bounds)))
        candidates = top.indices[:size]
        fresh = _gains(kernel, candidates, covered)
        bounds[candidates] = fresh
        best = fresh.max()
        next_bound = top.values[size] if size < remaining else None
        if next_bound is None or bool(best >= next_bound):
            return int(candidates[fresh == best].min()), float(best)
        size = min(2 * size, remaining)
