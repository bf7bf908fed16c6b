"""Non-negative OMP and NNLS, checked by optimality conditions and by exact recovery."""

from __future__ import annotations

import pytest
import torch

from coreselect.errors import InvalidInputError
from coreselect.matching import nonnegative_least_squares, nonnegative_omp


def test_nnls_satisfies_kkt_conditions() -> None:
    torch.manual_seed(0)
    a = torch.randn(8, 20, dtype=torch.float64)
    b = torch.randn(20, dtype=torch.float64)
    gram, rhs = a @ a.T, a @ b
    w = nonnegative_least_squares(gram, rhs, iterations=5000, tol=1e-14)
    grad = gram @ w - rhs
    assert (w >= 0).all()
    assert (grad >= -1e-8).all()  # no descent direction into the feasible set
    torch.testing.assert_close(grad[w > 1e-10], torch.zeros_like(grad[w > 1e-10]), atol=1e-8, rtol=0)
    assert (w == 0).any() and (w > 0).any()  # the constraint is active for this problem


def test_omp_recovers_a_sparse_nonnegative_combination() -> None:
    torch.manual_seed(1)
    atoms = torch.randn(200, 500, dtype=torch.float64)  # nearly orthogonal in 500 dimensions
    support = torch.tensor([3, 57, 120, 199])
    truth = torch.tensor([2.0, 0.5, 1.5, 3.0], dtype=torch.float64)
    target = atoms[support].T @ truth
    result = nonnegative_omp(atoms, target, k=10)
    assert sorted(result.indices.tolist()) == support.tolist()  # stops once the residual vanishes
    order = torch.argsort(result.indices)
    torch.testing.assert_close(result.weights[order], truth)
    assert result.residual_norm < 1e-8


def test_omp_weights_are_the_nnls_fit_on_its_support() -> None:
    torch.manual_seed(2)
    atoms = torch.randn(60, 15, dtype=torch.float64)
    target = torch.randn(15, dtype=torch.float64)
    result = nonnegative_omp(atoms, target, k=6, lam=0.1)
    assert len(result.indices) <= 6 and (result.weights >= 0).all()
    chosen = atoms[result.indices]
    gram, rhs = chosen @ chosen.T + 0.1 * torch.eye(len(chosen), dtype=torch.float64), chosen @ target
    grad = gram @ result.weights - rhs
    assert (grad >= -1e-6).all()
    assert torch.allclose(grad[result.weights > 1e-9], torch.zeros(1, dtype=torch.float64), atol=1e-6)
    residual = (chosen.T @ result.weights - target).norm()
    assert result.residual_norm == pytest.approx(float(residual))


def test_omp_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="cannot pick 5 of 4"):
        nonnegative_omp(torch.randn(4, 3), torch.randn(3), 5)
    with pytest.raises(InvalidInputError, match="n×D"):
        nonnegative_omp(torch.randn(4, 3), torch.randn(2), 1)
    with pytest.raises(InvalidInputError, match="NaN"):
        nonnegative_omp(torch.full((4, 3), float("nan")), torch.randn(3), 1)
    negative = nonnegative_omp(torch.eye(3), -torch.ones(3), 2)  # nothing correlates positively
    assert len(negative.indices) == 0
