"""Last-layer KFAC Laplace posterior in function space, and the Bayesian data-selection score.

Factors (exponential averages over the training batches, the first update copies):
A ← ρA + (1−ρ)·HᵀH/|b| (H penultimate features, d×d) and G ← ρG + (1−ρ)·EᵀE/|b| (E = softmax − one-hot,
C×C; the empirical Fisher with labels). With V = √n_e·A + √τ₀·I and U = √n_e·G + √τ₀·I the logits of x
are Gaussian, f_x ~ N(f_θ(x), (hᵀV⁻¹h)·U⁻¹); samples are f_θ(x) + √(hᵀV⁻¹h)·L_U^{−T}ε with U = L_U L_Uᵀ.

Score of (x, y) with S samples f^(s) and validation-model logits f̃ (Deng et al., NeurIPS 2023):
a = α·mean_s log softmax(f^(s))_y + (1−α)·log softmax(f̃)_y − log mean_s softmax(f^(s))_y.

Closed form (no samples; :func:`bayesian_score_closed_form`), both expectations to second order in the noise of
f ~ N(μ, v·Σ), Σ = U⁻¹, p = softmax(μ), c = tr((diag p − ppᵀ)Σ), q = (e_y − p)ᵀΣ(e_y − p):
E[log softmax(f)_y] ≈ log p_y − ½·v·c and E[softmax(f)_y] ≈ p_y·(1 + ½·v·(q − c)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class KfacFactors:
    """Exponentially averaged last-layer KFAC factors; ``count`` is the number of updates so far."""

    momentum: float = 0.99
    a: Tensor | None = None
    g: Tensor | None = None
    count: int = field(default=0)

    def update(self, features: Tensor, logit_grads: Tensor) -> None:
        """One batch: H (b, d) penultimate features and E (b, C) logit gradients of the trained examples."""
        features, logit_grads = features.detach().double(), logit_grads.detach().double()
        if self.a is None or self.g is None:
            self.a = features.T @ features / len(features)
            self.g = logit_grads.T @ logit_grads / len(logit_grads)
        else:  # in place: ρ·A + (1 − ρ)·HᵀH/|b|
            self.a.mul_(self.momentum).addmm_(features.T, features, alpha=(1 - self.momentum) / len(features))
            self.g.mul_(self.momentum).addmm_(logit_grads.T, logit_grads,
                                              alpha=(1 - self.momentum) / len(logit_grads))
        self.count += 1

    def state_dict(self) -> dict:
        return {"momentum": self.momentum, "a": self.a, "g": self.g, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.momentum, self.a, self.g, self.count = state["momentum"], state["a"], state["g"], state["count"]


def logit_variance_and_factor(features: Tensor, factors: KfacFactors, effective_data: float,
                              prior_precision: float) -> tuple[Tensor, Tensor]:
    """(hᵀV⁻¹h for each row of ``features``, L_U^{−T}) of the function-space posterior."""
    assert factors.a is not None and factors.g is not None
    root_n, root_tau = math.sqrt(effective_data), math.sqrt(prior_precision)
    v, u = root_n * factors.a, root_n * factors.g
    v.diagonal().add_(root_tau)
    u.diagonal().add_(root_tau)
    l_v = torch.linalg.cholesky(v)
    z = torch.linalg.solve_triangular(l_v, features.double().T.to(l_v.device), upper=False)  # L_V⁻¹ hᵀ
    variance = z.square_().sum(0)
    l_u = torch.linalg.cholesky(u)
    eye = torch.eye(u.shape[0], dtype=torch.float64, device=u.device)
    return variance, torch.linalg.solve_triangular(l_u, eye, upper=False).T  # L_U^{-T}


def sample_logits(logits: Tensor, variance: Tensor, inv_chol_t: Tensor, samples: int,
                  generator: torch.Generator | None = None, *, within: tuple[int, int] | None = None) -> Tensor:
    """[S, n, C] samples f + √var·L_U^{−T}ε (``inv_chol_t`` = L_U^{−T}).

    ``within=(start, total)``: the n rows are rows [start, start + n) of a batch of ``total``; the noise is drawn
    for the whole batch and these rows taken, so a shard of the batch gets the numbers the whole batch would.
    """
    n, c = logits.shape
    start, total = (0, n) if within is None else within
    eps = torch.randn(samples, total, c, generator=generator)[:, start : start + n].to(logits.device)  # float32
    noise = eps @ inv_chol_t.T.float().to(logits.device)  # rows: (L_U^{-T} ε)ᵀ
    return logits.float()[None] + variance.float().to(logits.device).sqrt()[None, :, None] * noise


def target_log_probs(logits: Tensor, targets: Tensor) -> Tensor:
    """log softmax(f̃)_y of each row, in float64: a validation model's log-probability of each label (a constant
    of the example, so a strategy may compute it once for the whole training set)."""
    return torch.log_softmax(logits.double(), dim=1).gather(1, targets.view(-1, 1)).squeeze(1)


def bayesian_score(sampled_logits: Tensor, validation_log_p: Tensor, targets: Tensor, alpha: float) -> Tensor:
    """The per-example score a(x, y) of the module docstring, from [S, n, C] samples and the validation model's
    log-probability of each label, [n] (:func:`target_log_probs`)."""
    index = targets.view(1, -1, 1).expand(sampled_logits.shape[0], -1, 1)
    log_p = torch.log_softmax(sampled_logits.float(), dim=2).gather(2, index).squeeze(2)  # [S, n]
    log_mean_p = torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[0])
    log_p_val = validation_log_p.float().to(log_p.device)
    return alpha * log_p.mean(0) + (1 - alpha) * log_p_val - log_mean_p


def bayesian_score_closed_form(logits: Tensor, variance: Tensor, inv_chol_t: Tensor, validation_log_p: Tensor,
                               targets: Tensor, alpha: float) -> Tensor:
    """The score a(x, y) without samples: both expectations over the posterior to second order in the logit
    noise (module docstring); ``variance`` = hᵀV⁻¹h per row, ``inv_chol_t`` = L_U^{−T} (Σ = L_U^{−T}L_U^{−1}),
    ``validation_log_p`` the validation model's log-probability of each label (:func:`target_log_probs`)."""
    y = targets.view(-1, 1)
    inv = inv_chol_t.double().to(logits.device)
    sigma = inv @ inv.T
    diagonal = sigma.diagonal()
    log_probs = torch.log_softmax(logits.double(), dim=1)
    p = log_probs.exp()
    log_p = log_probs.gather(1, y).squeeze(1)
    p_sigma = p @ sigma
    p_sigma_p = (p_sigma * p).sum(1)
    curvature = p @ diagonal - p_sigma_p  # tr((diag p − ppᵀ)Σ)
    spread = diagonal[targets] - 2 * p_sigma.gather(1, y).squeeze(1) + p_sigma_p  # (e_y − p)ᵀΣ(e_y − p)
    half_v = 0.5 * variance.double().to(logits.device)
    expected_log_p = log_p - half_v * curvature
    log_expected_p = log_p + torch.log1p((half_v * (spread - curvature)).clamp_min(-0.99))
    log_p_val = validation_log_p.double().to(logits.device)
    return (alpha * expected_log_p + (1 - alpha) * log_p_val - log_expected_p).float()
