"""Facility location on embeddings: one ground set, or one problem per class with quotas."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from coreselect.distributed import world
from coreselect.errors import InvalidInputError
from coreselect.submodular.embeddings import Embedding, EuclideanPoints, as_embedding
from coreselect.submodular.greedy import GreedyResult, batched_greedy_tensors, greedy_facility_location
from coreselect.submodular.kernel import DEFAULT_MAX_KERNEL_BYTES, dense_similarity, make_kernel
from coreselect.submodular.similarity import needs_global_max, self_value, transform_


@dataclass(frozen=True)
class Coreset:
    """Selected indices (into the whole set) with cluster-size weights normalised to mean 1."""

    indices: Tensor
    weights: Tensor
    objective: float


def _empty(device: torch.device | None) -> Coreset:
    """The coreset of nothing selected."""
    nothing = torch.zeros(0, dtype=torch.long, device=device)
    return Coreset(nothing, nothing.float(), 0.0)


def normalise_weights(weights: Tensor) -> Tensor:
    """Scale weights to mean 1 over the selection (w ← w · |S| / Σw)."""
    total = weights.sum()
    return weights * (len(weights) / total) if len(weights) and total > 0 else torch.ones_like(weights)


def facility_location(
    embeddings: Tensor | Embedding,
    k: int,
    *,
    similarity: str = "max_minus",
    optimizer: str = "lazy",
    epsilon: float = 0.01,
    generator: torch.Generator | None = None,
    max_kernel_bytes: int = DEFAULT_MAX_KERNEL_BYTES,
) -> GreedyResult:
    """Greedy facility location on a ground set: rows of a tensor (Euclidean) or any :class:`Embedding`.

    The kernel is dense while n² floats fit in ``max_kernel_bytes``; beyond, similarity rows are computed
    on demand in blocks, so memory stays O(max_kernel_bytes) whatever n is.
    """
    ground = as_embedding(embeddings)
    if not 0 <= k <= ground.n:
        raise InvalidInputError(f"cannot select {k} of {ground.n} points; k must lie in [0, {ground.n}]")
    kernel = make_kernel(ground, similarity, max_kernel_bytes)
    return greedy_facility_location(kernel, k, optimizer=optimizer, epsilon=epsilon, generator=generator)


def class_quotas(counts: Tensor, budget: int, proportional: bool = False) -> Tensor:
    """How many to select from each class, summing to ``budget`` and never above a class's size.

    Equal quotas give every non-empty class ⌊budget/C⌋ or ⌈budget/C⌉ (lower class labels first);
    proportional quotas follow class sizes (largest remainders). A class too small for its quota hands the
    surplus to the others. Empty classes get nothing.
    """
    counts = counts.to(torch.long).cpu()
    total = int(counts.sum())
    if not 0 <= budget <= total:
        raise InvalidInputError(f"cannot select {budget} of {total} points; the budget must lie in [0, {total}]")
    quotas = torch.zeros_like(counts)
    open_classes = counts > 0
    remaining = budget
    while True:  # classes smaller than their share take everything; the rest is shared again
        weights = counts.double() if proportional else torch.ones_like(counts, dtype=torch.float64)
        weights = torch.where(open_classes, weights, torch.zeros_like(weights))
        share = weights / max(float(weights.sum()), 1.0) * remaining
        capped = open_classes & (counts <= share)
        if not capped.any():
            break
        quotas[capped] = counts[capped]
        remaining -= int(counts[capped].sum())
        open_classes &= ~capped
    floor = share.floor().long()
    quotas += floor
    leftover = remaining - int(floor.sum())
    if leftover > 0:  # largest remainders first, lower labels on ties
        order = torch.argsort(-(share - floor), stable=True)[:leftover]
        quotas[order] += 1
    return quotas


BATCHED_MAX_CLASS = 512  # classes up to this size are solved together by one batched exact greedy


def _class_problems(labels: Tensor, budget: int, proportional: bool) -> tuple[list[tuple[int, int]], int]:
    """(class, quota) of every class that :func:`class_quotas` gives a positive quota, and the largest such class's
    size."""
    classes, counts = torch.unique(labels, return_counts=True)
    quotas = class_quotas(counts, budget, proportional)
    kept = [(c, quota, size) for c, quota, size in zip(classes.tolist(), quotas.tolist(), counts.tolist(), strict=True)
            if quota > 0]
    return [(c, quota) for c, quota, _ in kept], max((size for *_, size in kept), default=0)


def _problem_members(labels: list[Tensor], problems: list[list[tuple[int, int]]]) -> tuple[Tensor, Tensor]:
    """Each problem's members (B × largest class, ascending positions in its ground set, −1 padded) and its
    ground set's number, found by one stable sort of all sets' (set, label) keys."""
    device = labels[0].device
    lengths = torch.tensor([len(lab) for lab in labels], device=device)
    top = int(max((int(lab.max()) for lab in labels if len(lab)), default=0)) + 1
    owner = torch.repeat_interleave(torch.arange(len(labels), device=device), lengths)
    keys = owner * top + torch.cat(labels).long()
    order = torch.sort(keys, stable=True).indices  # positions in the concatenation, grouped by (set, class)
    counts = torch.bincount(keys, minlength=len(labels) * top)
    starts = counts.cumsum(0) - counts
    problem_set = torch.tensor([i for i, probs in enumerate(problems) for _ in probs], device=device)
    problem_key = problem_set * top + torch.tensor([c for probs in problems for c, _ in probs], device=device)
    sizes = counts[problem_key]
    rank = torch.arange(int(sizes.max()), device=device)
    inside = rank[None, :] < sizes[:, None]
    flat = order[(starts[problem_key][:, None] + rank[None, :]).clamp(max=len(order) - 1)]
    set_starts = lengths.cumsum(0) - lengths
    return torch.where(inside, flat - set_starts[problem_set][:, None], -1), problem_set


def _problem_kernels(grounds: list[Embedding], members: Tensor, problem_set: Tensor, similarity: str) -> Tensor:
    """Each problem's similarity matrix (B × S × S, zero beyond its members): of Euclidean points in a few batched
    operations, :func:`dense_similarity` of the members otherwise."""
    inside = members >= 0
    if all(isinstance(g, EuclideanPoints) for g in grounds):
        offsets = torch.tensor([0] + [g.n for g in grounds], device=members.device).cumsum(0)[:-1]
        x = torch.cat([g.x for g in grounds])[(members + offsets[problem_set][:, None]).clamp(min=0)]
        x = x * inside[..., None]  # (B, S, d)
        sq = x.pow(2).sum(2)
        kernels = torch.baddbmm(sq[:, None, :], x, x.transpose(1, 2), alpha=-2.0).add_(sq[:, :, None]).clamp_(min=0)
        kernels = transform_(similarity, kernels, x.shape[2])
        kernels.diagonal(dim1=1, dim2=2).fill_(self_value(similarity))  # exact, free of cancellation
        pair = inside[:, :, None] & inside[:, None, :]
        if needs_global_max(similarity):
            largest = kernels.masked_fill(~pair, -math.inf).amax((1, 2), keepdim=True)
            kernels = largest - kernels
        return kernels * pair
    first = grounds[0]
    kernels = torch.zeros(*members.shape, members.shape[1], dtype=first.dtype, device=first.device)
    for b, (row, s) in enumerate(zip(members, problem_set.tolist(), strict=True)):
        m = row[row >= 0]
        kernels[b, : len(m), : len(m)] = dense_similarity(grounds[s].select(m), similarity)
    return kernels


def _solved_together(grounds: list[Embedding], labels: list[Tensor], problems: list[list[tuple[int, int]]],
                     similarity: str) -> list[Coreset]:
    """Every class problem of every ground set solved by one :func:`batched_greedy_tensors`: the same picks as one
    lazy greedy per class, in a few tensor operations per step instead of a few per step, class and ground set.
    Every rank solves them all."""
    quotas = [q for probs in problems for _, q in probs]
    if not quotas:
        return [_empty(ground.device) for ground in grounds]
    members, problem_set = _problem_members(labels, problems)
    sizes = (members >= 0).sum(1)
    solved = batched_greedy_tensors(_problem_kernels(grounds, members, problem_set, similarity), sizes.tolist(),
                                    quotas)
    picked = torch.arange(solved.picks.shape[1], device=members.device)[None, :] < torch.tensor(
        quotas, device=members.device)[:, None]
    owner = problem_set[:, None].expand_as(picked)[picked]  # problems in order, so each set's picks are contiguous
    per_set = torch.bincount(owner, minlength=len(grounds)).tolist()
    indices = torch.gather(members, 1, solved.picks)[picked].split(per_set)
    weights = solved.weights[picked].split(per_set)
    objectives = torch.zeros(len(grounds), dtype=solved.objectives.dtype, device=members.device)
    objectives.index_add_(0, problem_set, solved.objectives)
    return [Coreset(i, normalise_weights(w), float(f)) if len(i) else _empty(ground.device)
            for ground, i, w, f in zip(grounds, indices, weights, objectives, strict=True)]


def per_class_facility_locations(embeddings: list[Tensor | Embedding], labels: list[Tensor], budgets: list[int], *,
                                 similarity: str = "max_minus") -> list[Coreset]:
    """:func:`per_class_facility_location` (lazy greedy, equal quotas) of each ground set ``embeddings[i]`` with its
    ``labels[i]`` and ``budgets[i]``: while every class of every set has at most ``BATCHED_MAX_CLASS`` points, all
    their class problems are solved by one batched greedy (every rank solves them all); otherwise the sets are
    dealt across ranks and solved one at a time."""
    if not len(embeddings) == len(labels) == len(budgets):
        raise InvalidInputError(f"{len(embeddings)} ground sets, {len(labels)} label vectors, {len(budgets)} budgets")
    grounds = [as_embedding(e) for e in embeddings]
    for ground, lab in zip(grounds, labels, strict=True):
        if lab.ndim != 1 or lab.shape[0] != ground.n:
            raise InvalidInputError(f"{ground.n} embeddings but labels of shape {tuple(lab.shape)}")
    posed = [_class_problems(lab, budget, False) for lab, budget in zip(labels, budgets, strict=True)]
    problems = [probs for probs, _ in posed]
    if all(largest <= BATCHED_MAX_CLASS for _, largest in posed):
        return _solved_together(grounds, labels, problems, similarity)

    def solve(i: int) -> tuple[Tensor, Tensor, float]:
        coreset = per_class_facility_location(grounds[i], labels[i], budgets[i], similarity=similarity)
        return coreset.indices, coreset.weights, coreset.objective  # a tuple: moved to the CPU to be gathered

    return [Coreset(*solved) for solved in world().share_work(solve, range(len(grounds)))]


def per_class_facility_location(
    embeddings: Tensor | Embedding,
    labels: Tensor,
    budget: int,
    *,
    proportional: bool = False,
    similarity: str = "max_minus",
    optimizer: str = "lazy",
    epsilon: float = 0.01,
    generator: torch.Generator | None = None,
    max_kernel_bytes: int = DEFAULT_MAX_KERNEL_BYTES,
) -> Coreset:
    """Facility location solved inside each class (same-class similarities only), quotas by
    :func:`class_quotas`; weights are cluster sizes within the class, normalised to mean 1 overall.

    The largest kernel held is that of the largest class (bounded by ``max_kernel_bytes``). In a distributed
    job the classes are dealt across ranks and the results gathered; each class's stochastic greedy draws
    from its own generator, seeded from ``generator`` before any class is solved, so the result does not
    depend on the number of processes.
    """
    ground = as_embedding(embeddings)
    if labels.ndim != 1 or labels.shape[0] != ground.n:
        raise InvalidInputError(f"{ground.n} embeddings but labels of shape {tuple(labels.shape)}")
    problems, largest = _class_problems(labels, budget, proportional)
    if optimizer in ("lazy", "naive") and len(problems) > 1 and largest <= BATCHED_MAX_CLASS:
        return _solved_together([ground], [labels], [problems], similarity)[0]
    stochastic = optimizer == "stochastic" and generator is not None  # lazy greedy draws nothing
    seeds = (torch.randint(0, 2**62, (len(problems),), generator=generator).tolist() if stochastic
             else [None] * len(problems))

    def solve(problem: tuple[int, int, int | None]) -> tuple[Tensor, Tensor, float]:
        c, quota, seed = problem
        members = torch.nonzero(labels == c).squeeze(1)
        result = facility_location(ground.select(members), quota, similarity=similarity, optimizer=optimizer,
                                   epsilon=epsilon, max_kernel_bytes=max_kernel_bytes,
                                   generator=None if seed is None else torch.Generator().manual_seed(seed))
        return members[result.indices], result.weights, result.objective

    solved = world().share_work(solve, [(c, q, s) for (c, q), s in zip(problems, seeds, strict=True)])
    if not solved:
        return _empty(ground.device)
    device = ground.device
    indices = torch.cat([i.to(device) for i, _, _ in solved])
    weights = torch.cat([w.to(device) for _, w, _ in solved])
    return Coreset(indices, normalise_weights(weights), sum(o for _, _, o in solved))
