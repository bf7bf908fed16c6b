"""Greedy maximisation of facility location F(S) = Σ_i max_{j∈S} s_ij.

Three optimisers over a :class:`~coreselect.submodular.kernel.SimilarityKernel`:

- ``naive``: every remaining candidate's gain is evaluated at every step;
- ``lazy``: exact greedy with stale upper bounds (submodularity), refreshing a batch of top bounds at a
  time so that each step is a few tensor operations; same picks as ``naive`` except that exact ties
  between gains may go to another element of equal gain;
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


class _Gains:
    """Marginal gains Σ_i max(s_ij, covered_i) − Σ_i covered_i, evaluated ``chunk`` candidates at a time
    in reused buffers (fresh large temporaries cost more than the arithmetic on a CPU)."""

    def __init__(self, kernel: SimilarityKernel, dtype: torch.dtype, device: torch.device, chunk: int = 256):
        self.kernel, self.chunk = kernel, chunk
        self.rows = torch.empty(min(chunk, kernel.n), kernel.n, dtype=dtype, device=device)

    def __call__(self, candidates: Tensor, covered: Tensor, covered_sum: Tensor) -> Tensor:
        count = candidates.shape[0]
        if count <= self.chunk:
            rows = self.kernel.rows_into(candidates, self.rows[:count])
            return torch.maximum(rows, covered, out=rows).sum(1).sub_(covered_sum)
        out = torch.empty(count, dtype=self.rows.dtype, device=self.rows.device)
        for start in range(0, count, self.chunk):
            chunk = candidates[start : start + self.chunk]
            rows = self.kernel.rows_into(chunk, self.rows[: chunk.shape[0]])
            torch.maximum(rows, covered, out=rows)
            torch.sum(rows, 1, out=out[start : start + chunk.shape[0]])
        return out.sub_(covered_sum)


def _assign(kernel: SimilarityKernel, picks: Tensor, buffer: Tensor) -> Tensor:
    """For each ground element, the position of its most similar pick (the earliest on exact ties)."""
    best = assignment = None
    for start in range(0, len(picks), len(buffer)):
        chunk = picks[start : start + len(buffer)]
        values, positions = kernel.rows_into(chunk, buffer[: len(chunk)]).max(0)
        if best is None or assignment is None:
            best, assignment = values, positions
        else:
            better = values > best
            best = torch.where(better, values, best)
            assignment = torch.where(better, positions + start, assignment)
    assert assignment is not None
    return assignment


def greedy_facility_location(
    kernel: SimilarityKernel,
    k: int,
    *,
    optimizer: str = "lazy",
    epsilon: float = 0.01,
    generator: torch.Generator | None = None,
    batch: int = 32,
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
    covered_sum = torch.zeros((), dtype=dtype, device=device)
    picks: list[Tensor] = []
    gains: list[Tensor] = []
    sample_size = min(n, math.ceil(n / max(k, 1) * math.log(1.0 / epsilon)))
    gains_of = _Gains(kernel, dtype, device)
    for step in range(k):
        if optimizer == "lazy":
            pick, gain = _lazy_step(gains_of, bounds, covered, covered_sum, n - step, batch)
        else:
            remaining = torch.nonzero(bounds > -math.inf).squeeze(1)
            if optimizer == "stochastic":
                order = torch.randperm(len(remaining), generator=generator)[:sample_size].to(device)
                remaining = remaining[order].sort().values
            fresh = gains_of(remaining, covered, covered_sum)
            gain, position = fresh.max(0)
            pick = remaining[position]
        torch.maximum(covered, kernel.rows_into(pick.view(1), gains_of.rows[:1])[0], out=covered)
        covered_sum = covered.sum()
        bounds[pick] = -math.inf
        picks.append(pick)
        gains.append(gain)

    if k == 0:
        empty = torch.zeros(0, dtype=dtype, device=device)
        no_picks = torch.zeros(0, dtype=torch.long, device=device)
        return GreedyResult(no_picks, empty, empty, 0.0, torch.full((n,), -1, dtype=torch.long, device=device))
    indices = torch.stack(picks)
    assignment = _assign(kernel, indices, gains_of.rows)
    return GreedyResult(
        indices=indices,
        gains=torch.stack(gains),
        weights=torch.bincount(assignment, minlength=k).to(dtype),
        objective=float(covered_sum),
        assignment=assignment,
    )


def _lazy_step(
    gains_of: _Gains, bounds: Tensor, covered: Tensor, covered_sum: Tensor, remaining: int, size: int
) -> tuple[Tensor, Tensor]:
    """One exact greedy step with stale upper bounds.

    Refreshes the ``size`` largest bounds; if the best fresh gain beats every other bound it is the greedy
    pick, else every candidate whose bound still exceeds the best fresh gain is refreshed, until none does.
    """
    size = min(size, remaining)
    top = torch.topk(bounds, min(size + 1, remaining))
    candidates = top.indices[:size].sort().values  # ascending, so that exact ties go to the lowest index
    fresh = gains_of(candidates, covered, covered_sum)
    bounds[candidates] = fresh
    best_gain, position = fresh.max(0)
    best_pick = candidates[position]
    if size >= remaining or bool(best_gain >= top.values[size]):
        return best_pick, best_gain
    while True:
        candidates = torch.nonzero(bounds > best_gain).squeeze(1)
        if not len(candidates):
            return best_pick, best_gain
        fresh = gains_of(candidates, covered, covered_sum)
        bounds[candidates] = fresh
        gain, position = fresh.max(0)
        if gain > best_gain:
            best_gain, best_pick = gain, candidates[position]
        elif gain == best_gain:
            best_pick = torch.minimum(best_pick, candidates[fresh == gain].min())


@dataclass(frozen=True)
class BatchedGreedy:
    """:func:`batched_greedy_tensors`' result: row b holds problem b, padded beyond its ``k_b`` picks (0) and
    ``n_b`` elements (assignment −1)."""

    picks: Tensor  # (B, k_max) in greedy order
    gains: Tensor  # (B, k_max)
    weights: Tensor  # (B, k_max): cluster sizes
    objectives: Tensor  # (B,): F(S_b)
    assignment: Tensor  # (B, n): each element's pick position


def batched_greedy_tensors(similarities: Tensor, sizes: list[int], ks: list[int]) -> BatchedGreedy:
    """Exact greedy facility location on many small dense problems at once: problem b is the leading
    ``sizes[b]`` × ``sizes[b]`` block of ``similarities[b]`` (s_ij: ground element i, candidate j; padded beyond),
    of which it selects ``ks[b]``. Every gain is evaluated at every step (``naive``), all problems together, so a
    step costs a few tensor operations whatever the number of problems. Gains are sums of the increments
    max(s_ij − covered_i, 0), so picks may differ from :func:`greedy_facility_location`'s only between gains
    equal to float rounding; exact ties go to the lowest index, as there. Made for the many per-class problems
    of mini-batch coresets."""
    batch, n = similarities.shape[0], similarities.shape[1]
    if len(sizes) != batch or len(ks) != batch or any(not 0 <= k <= s for k, s in zip(ks, sizes, strict=True)):
        raise InvalidInputError(f"batched greedy: {batch} problems, sizes {sizes}, selections {ks}")
    device, dtype = similarities.device, similarities.dtype
    ground = torch.arange(n, device=device)[None, :] < torch.tensor(sizes, device=device)[:, None]  # (B, n)
    by_candidate = similarities.transpose(1, 2) * ground[:, None, :]  # (B, j, i): padded ground rows count 0
    covered = torch.zeros(batch, n, dtype=dtype, device=device)
    open_ = ground.clone()  # candidates still selectable
    wanted = torch.tensor(ks, device=device)
    k_max = max(ks, default=0)
    picks = torch.zeros(batch, k_max, dtype=torch.long, device=device)
    gains = torch.zeros(batch, k_max, dtype=dtype, device=device)
    rows = torch.arange(batch, device=device)
    for step in range(k_max):
        fresh = (by_candidate - covered[:, None, :]).clamp_(min=0).sum(2)  # increments: no cancellation
        fresh = fresh.masked_fill(~open_, -math.inf)
        gain, pick = fresh.max(1)  # the first maximum: the lowest index on ties
        active = step < wanted
        pick = torch.where(active, pick, 0)
        picks[:, step], gains[:, step] = pick, torch.where(active, gain, 0)
        chosen = by_candidate[rows, pick]  # (B, n)
        covered = torch.where(active[:, None], torch.maximum(covered, chosen), covered)
        open_[rows[active], pick[active]] = False
    assignment = torch.full((batch, n), -1, dtype=torch.long, device=device)
    if k_max:
        picked = torch.arange(k_max, device=device)[None, :] < wanted[:, None]  # (B, k_max)
        to_picks = torch.gather(similarities, 2, picks[:, None, :].expand(batch, n, k_max))  # (B, i, t): s_i,pick_t
        nearest = to_picks.masked_fill(~picked[:, None, :], -math.inf).max(2).indices  # earliest pick on ties
        assignment = nearest.masked_fill(~ground | (wanted == 0)[:, None], -1)
    weights = torch.zeros(batch, k_max, dtype=dtype, device=device)
    weights.scatter_add_(1, assignment.clamp(min=0), (assignment >= 0).to(dtype))
    return BatchedGreedy(picks, gains, weights, (covered * ground).sum(1), assignment)


def batched_greedy(similarities: Tensor, sizes: list[int], ks: list[int]) -> list[GreedyResult]:
    """:func:`batched_greedy_tensors`, one :class:`GreedyResult` per problem."""
    solved = batched_greedy_tensors(similarities, sizes, ks)
    return [GreedyResult(solved.picks[b, :k], solved.gains[b, :k], solved.weights[b, :k],
                         float(solved.objectives[b]), solved.assignment[b, :size])
            for b, (size, k) in enumerate(zip(sizes, ks, strict=True))]
