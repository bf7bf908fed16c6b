"""Facility location against a brute-force greedy written here in plain numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from coreselect.errors import InvalidInputError
from coreselect.submodular import (
    DenseKernel,
    class_quotas,
    dense_similarity,
    facility_location,
    greedy_facility_location,
    per_class_facility_location,
)


def numpy_similarity(x: np.ndarray, convention: str) -> np.ndarray:
    sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    if convention == "max_minus_squared":
        return sq.max() - sq
    d = np.sqrt(sq)
    return d.max() - d if convention == "max_minus" else np.exp(-d / x.shape[1])


def brute_force_greedy(sim: np.ndarray, k: int) -> tuple[list[int], float, np.ndarray, float]:
    """Plain greedy: every gain recomputed at every step, first index on ties; cluster sizes; and the
    smallest relative margin between the best and the second-best gain over the steps."""
    n = sim.shape[0]
    covered = np.zeros(n)
    picks: list[int] = []
    margin = math.inf
    for _ in range(k):
        gains = np.array([np.maximum(sim[:, j] - covered, 0).sum() if j not in picks else -math.inf
                          for j in range(n)])
        best = int(np.argmax(gains))
        runner_up = np.max(np.delete(gains, best)) if n - len(picks) > 1 else -math.inf
        margin = min(margin, (gains[best] - runner_up) / max(gains[best], 1e-300))
        picks.append(best)
        covered = np.maximum(covered, sim[:, best])
    assignment = np.argmax(sim[:, picks], axis=1)  # first maximum: the earliest pick wins ties
    return picks, float(covered.sum()), np.bincount(assignment, minlength=k).astype(float), margin


# problems whose greedy has a clear winner at every step (margin checked below), so that floating-point
# summation order cannot flip a pick; near-tied problems are checked pick by pick in the next test
PROBLEMS = [(60, 4, 12, 0), (60, 4, 12, 7), (60, 4, 12, 10), (80, 70, 10, 1), (80, 70, 10, 11)]
TIED = [(60, 4, 12, 1), (50, 2, 25, 4)]


@pytest.mark.parametrize("convention", ["max_minus", "max_minus_squared", "exp"])
@pytest.mark.parametrize(("n", "dim", "k", "seed"), PROBLEMS)
def test_lazy_and_naive_match_brute_force(convention: str, n: int, dim: int, k: int, seed: int) -> None:
    x = np.random.default_rng(seed).normal(size=(n, dim))
    picks, objective, weights, margin = brute_force_greedy(numpy_similarity(x, convention), k)
    assert margin > 1e-6
    for optimizer in ("lazy", "naive"):
        result = facility_location(torch.from_numpy(x), k, similarity=convention, optimizer=optimizer)
        assert result.indices.tolist() == picks, optimizer
        assert result.objective == pytest.approx(objective, rel=1e-9)
        np.testing.assert_allclose(result.weights.numpy(), weights)
        assert float(result.weights.sum()) == n


@pytest.mark.parametrize("convention", ["max_minus", "max_minus_squared", "exp"])
@pytest.mark.parametrize(("n", "dim", "k", "seed"), TIED)
def test_every_pick_is_a_greedy_choice_under_near_ties(convention: str, n: int, dim: int, k: int, seed: int) -> None:
    x = np.random.default_rng(seed).normal(size=(n, dim))
    sim = numpy_similarity(x, convention)
    for optimizer in ("lazy", "naive"):
        result = facility_location(torch.from_numpy(x), k, similarity=convention, optimizer=optimizer)
        covered = np.zeros(n)
        chosen: list[int] = []
        for pick in result.indices.tolist():
            gains = np.maximum(sim - covered[:, None], 0).sum(0)
            gains[chosen] = -math.inf
            assert gains[pick] == pytest.approx(gains.max(), rel=1e-9)  # a best choice, maybe not the first
            covered = np.maximum(covered, sim[:, pick])
            chosen.append(pick)
        assert result.objective == pytest.approx(covered.sum(), rel=1e-9)


@pytest.mark.parametrize(("n", "dim", "k", "seed"), PROBLEMS)
def test_stochastic_greedy_is_near_greedy(n: int, dim: int, k: int, seed: int) -> None:
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(n, dim)))
    greedy = facility_location(x, k).objective
    epsilon = 0.05
    generator = torch.Generator().manual_seed(seed)
    for _ in range(5):
        stochastic = facility_location(x, k, optimizer="stochastic", epsilon=epsilon, generator=generator)
        assert stochastic.objective >= (1 - 1 / math.e - epsilon) * greedy
        assert len(set(stochastic.indices.tolist())) == k


@pytest.mark.parametrize("dim", [3, 70])  # 70 features: the kernel is computed half and mirrored
@pytest.mark.parametrize("convention", ["max_minus", "max_minus_squared", "exp"])
def test_dense_kernel_matches_numpy(dim: int, convention: str) -> None:
    x = np.random.default_rng(dim).normal(size=(300, dim))
    kernel = dense_similarity(torch.from_numpy(x), convention, block=64)
    np.testing.assert_allclose(kernel.numpy(), numpy_similarity(x, convention), rtol=1e-9, atol=1e-9)


def test_on_demand_rows_match_the_dense_kernel() -> None:
    x = torch.from_numpy(np.random.default_rng(7).normal(size=(200, 6)))
    dense = facility_location(x, 20)
    bounded = facility_location(x, 20, max_kernel_bytes=200 * 8 * 4)  # 8 rows at a time, never 200²
    assert bounded.indices.tolist() == dense.indices.tolist()
    assert bounded.objective == pytest.approx(dense.objective, rel=1e-9)
    assert torch.equal(bounded.weights, dense.weights)


def test_precomputed_asymmetric_kernel() -> None:
    rng = np.random.default_rng(8)
    sim = rng.random((40, 40))
    picks, objective, weights, _ = brute_force_greedy(sim, 6)
    result = greedy_facility_location(DenseKernel(torch.from_numpy(sim)), 6)
    assert result.indices.tolist() == picks and result.objective == pytest.approx(objective)
    np.testing.assert_allclose(result.weights.numpy(), weights)


def test_class_quotas() -> None:
    counts = torch.tensor([50, 3, 0, 40, 7])
    equal = class_quotas(counts, 30)
    assert equal.tolist() == [10, 3, 0, 10, 7]  # 30 over 4 non-empty classes, class 1 full, surplus moves
    proportional = class_quotas(counts, 20, proportional=True)
    assert int(proportional.sum()) == 20 and (proportional <= counts).all()
    assert proportional.tolist() == [10, 1, 0, 8, 1]
    assert class_quotas(counts, 100).tolist() == counts.tolist()
    with pytest.raises(InvalidInputError, match=r"cannot select 101 of 100"):
        class_quotas(counts, 101)


def test_per_class_selection() -> None:
    rng = np.random.default_rng(9)
    x = torch.from_numpy(rng.normal(size=(120, 5)))
    labels = torch.from_numpy(rng.integers(0, 3, 120))
    labels[labels == 2] = 3  # labels need not be contiguous; class 2 is empty
    coreset = per_class_facility_location(x, labels, 12)
    assert len(coreset.indices) == 12 and len(set(coreset.indices.tolist())) == 12
    assert float(coreset.weights.mean()) == pytest.approx(1.0)
    objective = 0.0
    for c in (0, 1, 3):
        members = torch.nonzero(labels == c).squeeze(1)
        alone = facility_location(x[members], 4)
        chosen = coreset.indices[labels[coreset.indices] == c]
        assert chosen.tolist() == members[alone.indices].tolist()
        objective += alone.objective
    assert coreset.objective == pytest.approx(objective)
    # weights are cluster sizes within each class, rescaled to mean 1 over the whole selection
    sizes = torch.cat([facility_location(x[labels == c], 4).weights for c in (0, 1, 3)])
    torch.testing.assert_close(coreset.weights, sizes * 12 / 120)


def test_bad_input() -> None:
    x = torch.randn(10, 3)
    with pytest.raises(InvalidInputError, match=r"cannot select 11 of 10 points"):
        facility_location(x, 11)
    bad = x.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(InvalidInputError, match="1 embedding row"):
        facility_location(bad, 3)
    with pytest.raises(InvalidInputError, match="valid names: max_minus, max_minus_squared, exp"):
        facility_location(x, 3, similarity="cosine")
    with pytest.raises(InvalidInputError, match="valid names: lazy, naive, stochastic"):
        facility_location(x, 3, optimizer="greedy")
    with pytest.raises(InvalidInputError, match="non-negative"):
        DenseKernel(-torch.ones(3, 3))
    with pytest.raises(InvalidInputError, match="labels of shape"):
        per_class_facility_location(x, torch.zeros(9, dtype=torch.long), 2)
    assert len(facility_location(x, 0).indices) == 0


@pytest.mark.parametrize("bias", [True, False])
def test_last_layer_ground_set_matches_materialised_gradients(bias: bool) -> None:
    from coreselect.signals import last_layer_gradients
    from coreselect.submodular import LastLayerGradients

    rng = np.random.default_rng(12)
    e = torch.from_numpy(rng.normal(size=(90, 4)))
    h = torch.from_numpy(rng.normal(size=(90, 7)))
    closed_form = facility_location(LastLayerGradients(e, h, bias=bias), 9)
    materialised = facility_location(last_layer_gradients(e, h, bias=bias), 9)
    assert closed_form.indices.tolist() == materialised.indices.tolist()
    assert closed_form.objective == pytest.approx(materialised.objective, rel=1e-9)
    bounded = facility_location(LastLayerGradients(e, h, bias=bias), 9, max_kernel_bytes=90 * 4 * 4)
    assert bounded.indices.tolist() == materialised.indices.tolist()


def _is_greedy(similarity: torch.Tensor, picks: list[int]) -> bool:
    """Whether each pick has the largest gain of the remaining candidates (float64, up to float32 rounding)."""
    s = similarity.double()
    covered = torch.zeros(s.shape[0], dtype=torch.float64)
    tolerance = 1e-5 * float(s.sum(0).max())
    for t, pick in enumerate(picks):
        gains = (s - covered[:, None]).clamp(min=0).sum(0)
        gains[picks[:t]] = -math.inf
        if gains[pick] < gains.max() - tolerance:
            return False
        covered = torch.maximum(covered, s[:, pick])
    return True


@pytest.mark.parametrize("seed", range(6))
def test_batched_greedy_is_the_greedy_of_each_problem(seed: int) -> None:
    from coreselect.submodular.greedy import batched_greedy
    from coreselect.submodular.kernel import DenseKernel, dense_similarity

    g = torch.Generator().manual_seed(seed)
    sizes = [int(s) for s in torch.randint(1, 40, (7,), generator=g)]
    ks = [int(torch.randint(0, s + 1, (1,), generator=g)) for s in sizes]
    dims = 3 if seed % 2 else 12
    grounds = [torch.randn(s, dims, generator=g) for s in sizes]
    if seed == 5:  # duplicated points: exact ties between gains and between assignments
        grounds = [torch.cat([x, x])[: len(x)] if len(x) > 1 else x for x in grounds]
    padded = torch.zeros(7, max(sizes), max(sizes))
    for b, x in enumerate(grounds):
        padded[b, : len(x), : len(x)] = dense_similarity(x)
    for b, result in enumerate(batched_greedy(padded, sizes, ks)):
        similarity = dense_similarity(grounds[b])
        assert _is_greedy(similarity, result.indices.tolist())
        alone = greedy_facility_location(DenseKernel(similarity, symmetric=True), ks[b])
        assert math.isclose(result.objective, alone.objective, rel_tol=1e-5)
        if result.indices.tolist() == alone.indices.tolist():  # the usual case: then the clusters agree too
            assert result.assignment.tolist() == alone.assignment.tolist()
        nearest = similarity[:, result.indices].max(1).values if ks[b] else None
        if nearest is not None:  # every element is assigned to one of its most similar picks
            assert torch.equal(similarity[torch.arange(sizes[b]), result.indices[result.assignment]], nearest)
            assert result.weights.tolist() == torch.bincount(result.assignment, minlength=ks[b]).float().tolist()


def test_small_classes_take_the_batched_path_with_the_per_class_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    module = importlib.import_module("coreselect.submodular.facility_location")  # the package shadows the name

    g = torch.Generator().manual_seed(1)
    x, labels = torch.randn(300, 10, generator=g), torch.randint(0, 6, (300,), generator=g)
    batched = per_class_facility_location(x, labels, 40)
    monkeypatch.setattr(module, "BATCHED_MAX_CLASS", 0)  # one lazy greedy per class
    alone = per_class_facility_location(x, labels, 40)
    assert math.isclose(batched.objective, alone.objective, rel_tol=1e-5)
    assert sorted(batched.indices.tolist()) == sorted(alone.indices.tolist())


@pytest.mark.parametrize("batched_max_class", [512, 0])
def test_many_ground_sets_solved_together_give_each_sets_own_selection(monkeypatch: pytest.MonkeyPatch,
                                                                      batched_max_class: int) -> None:
    import importlib

    from coreselect.submodular import per_class_facility_locations

    module = importlib.import_module("coreselect.submodular.facility_location")
    g = torch.Generator().manual_seed(3)
    sizes, budgets = [90, 37, 64, 5], [20, 37, 9, 2]  # the whole set; a class of one label only
    grounds = [torch.randn(n, 10, generator=g) for n in sizes]
    labels = [torch.randint(0, 4, (n,), generator=g) for n in sizes]
    labels[2] = torch.full((64,), 2)
    # no class of two examples picking one: its two choices tie exactly (a symmetric similarity), and which one
    # each path takes then hangs on the last bit of its arithmetic
    labels[3] = torch.tensor([0, 0, 0, 1, 2])
    monkeypatch.setattr(module, "BATCHED_MAX_CLASS", batched_max_class)  # 0: one set at a time, lazy greedy
    together = per_class_facility_locations(grounds, labels, budgets)
    monkeypatch.setattr(module, "BATCHED_MAX_CLASS", 0)
    for x, y, budget, coreset in zip(grounds, labels, budgets, together, strict=True):
        alone = per_class_facility_location(x, y, budget)  # one lazy greedy per class of this set only
        assert math.isclose(coreset.objective, alone.objective, rel_tol=1e-5)
        assert sorted(coreset.indices.tolist()) == sorted(alone.indices.tolist())
        by_index = dict(zip(alone.indices.tolist(), alone.weights.tolist(), strict=True))
        assert [by_index[i] for i in coreset.indices.tolist()] == pytest.approx(coreset.weights.tolist())
    with pytest.raises(InvalidInputError, match="labels of shape"):
        per_class_facility_locations(grounds, [labels[1], *labels[1:]], budgets)
