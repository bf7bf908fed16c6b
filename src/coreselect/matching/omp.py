"""Non-negative orthogonal matching pursuit: min_{w ≥ 0, ‖w‖₀ ≤ k} ‖Aᵀw − b‖² + λ‖w‖².

Each step adds the atom most positively correlated with the residual, re-fits the weights on the chosen
atoms by regularised least squares (an incrementally extended Cholesky factor, O(|S|²) per step) clipped at
zero, and stops early when the residual vanishes or no atom correlates positively. The final weights are
the exact non-negative least-squares fit on the chosen atoms (accelerated projected gradient).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from coreselect.errors import InvalidInputError


@dataclass(frozen=True)
class MatchingResult:
    """Chosen atoms (in selection order), their non-negative weights, and ‖Aᵀw − b‖."""

    indices: Tensor
    weights: Tensor
    residual_norm: float


def nonnegative_least_squares(gram: Tensor, rhs: Tensor, start: Tensor | None = None, iterations: int = 500,
                              tol: float = 1e-10) -> Tensor:
    """argmin_{w ≥ 0} ½ wᵀ G w − rhsᵀ w for a positive semi-definite ``gram`` (FISTA with restarts)."""
    m = gram.shape[0]
    if m == 0:
        return rhs.new_zeros(0)
    lipschitz = float(torch.linalg.eigvalsh(gram)[-1])
    if lipschitz <= 0:
        return rhs.new_zeros(m)
    w = (start if start is not None else rhs.new_zeros(m)).clamp_min(0)
    y, t = w.clone(), 1.0
    for _ in range(iterations):
        w_next = (y - (gram @ y - rhs) / lipschitz).clamp_min_(0)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        step = w_next - w
        y = w_next + (t - 1) / t_next * step
        if float((gram @ w_next - rhs) @ step) > 0:  # restart momentum when the objective rises
            y, t_next = w_next.clone(), 1.0
        w, t = w_next, t_next
        if float(step.norm()) <= tol * max(float(w.norm()), 1e-30):
            break
    return w


def nonnegative_omp(atoms: Tensor, target: Tensor, k: int, *, lam: float = 0.0, tol: float = 1e-10) -> MatchingResult:
    """Pick at most ``k`` rows of ``atoms`` (n × D) whose non-negative combination best matches ``target``."""
    n = atoms.shape[0]
    if atoms.ndim != 2 or target.shape != (atoms.shape[1],):
        raise InvalidInputError(f"atoms must be n×D and the target D-dimensional, got {tuple(atoms.shape)} "
                                f"and {tuple(target.shape)}")
    if not 0 <= k <= n:
        raise InvalidInputError(f"cannot pick {k} of {n} atoms; k must lie in [0, {n}]")
    if not (torch.isfinite(atoms).all() and torch.isfinite(target).all()):
        raise InvalidInputError("atoms or target hold NaN or infinite values; check the gradients")
    a, b = atoms.double(), target.double()
    correlations = a @ b
    available = torch.ones(n, dtype=torch.bool, device=a.device)
    chosen: list[int] = []
    chol = a.new_zeros(0, 0)
    weights = a.new_zeros(0)
    residual = b.clone()
    target_norm = float(b.norm())
    while len(chosen) < k and float(residual.norm()) > tol * max(target_norm, 1e-30):
        scores = torch.where(available, a @ residual, torch.full((n,), -math.inf, dtype=a.dtype, device=a.device))
        j = int(scores.argmax())
        if float(scores[j]) <= 0:
            break
        available[j] = False
        cross = a[chosen] @ a[j] if chosen else a.new_zeros(0)
        diag = float(a[j] @ a[j]) + lam
        row = torch.linalg.solve_triangular(chol, cross[:, None], upper=False)[:, 0] if chosen else cross
        pivot = diag - float(row @ row)
        if pivot <= 1e-12 * max(diag, 1e-30):  # linearly dependent on the chosen atoms: skip it
            continue
        size = len(chosen)
        extended = a.new_zeros(size + 1, size + 1)
        extended[:size, :size] = chol
        extended[size, :size] = row
        extended[size, size] = math.sqrt(pivot)
        chol = extended
        chosen.append(j)
        weights = torch.cholesky_solve(correlations[chosen][:, None], chol)[:, 0].clamp_min(0)
        residual = b - a[chosen].T @ weights
    if chosen:
        gram = chol @ chol.T
        weights = nonnegative_least_squares(gram, correlations[chosen], start=weights)
        residual = b - a[chosen].T @ weights
    index = torch.tensor(chosen, dtype=torch.long, device=atoms.device)
    return MatchingResult(index, weights.to(atoms.dtype), float(residual.norm()))
