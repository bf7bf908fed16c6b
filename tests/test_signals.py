"""Closed-form per-example signals against per-example autograd (torch.func)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from coreselect.models import create_model
from coreselect.signals import (
    forward_in_batches,
    last_layer_gradient_norms,
    last_layer_gradients,
    last_layer_pairwise_sq_distances,
    logit_gradients,
    pairwise_sq_distances,
    per_example_losses,
)

TOL = {"atol": 1e-5, "rtol": 1e-5}


def _setup(n: int = 24) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = create_model("lenet", (1, 12, 12), 5).eval()
    return model, torch.randn(n, 1, 12, 12), torch.randint(0, 5, (n,))


def _autograd_last_layer_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example [∂CE/∂bias, vec(∂CE/∂weight)] of the last linear layer by torch.func."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(head: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, {**params, **head}, (xi[None],))
        return F.cross_entropy(out, yi[None])

    head = {"fc.weight": params["fc.weight"], "fc.bias": params["fc.bias"]}
    g = vmap(grad(loss), in_dims=(None, 0, 0))(head, x, y)
    return torch.cat([g["fc.bias"], g["fc.weight"].flatten(1)], dim=1)


def test_logit_gradients_and_losses_match_autograd() -> None:
    model, x, y = _setup()
    logits = model(x).detach()
    per_example = vmap(grad(lambda z, t: F.cross_entropy(z[None], t[None])))(logits, y)
    torch.testing.assert_close(logit_gradients(logits, y), per_example, **TOL)
    expected_losses = torch.stack([F.cross_entropy(logits[i : i + 1], y[i : i + 1]) for i in range(len(y))])
    torch.testing.assert_close(per_example_losses(logits, y), expected_losses, **TOL)


def test_last_layer_gradients_norms_and_distances_match_autograd() -> None:
    model, x, y = _setup()
    reference = _autograd_last_layer_grads(model, x, y)
    out = forward_in_batches(model, x, batch_size=7, with_features=True)
    assert out.features is not None
    e, h = logit_gradients(out.logits, y), out.features
    torch.testing.assert_close(last_layer_gradients(e, h), reference, **TOL)
    torch.testing.assert_close(last_layer_gradient_norms(e, h), reference.norm(dim=1), **TOL)
    num_classes = e.shape[1]
    torch.testing.assert_close(last_layer_gradient_norms(e, h, bias=False),
                               reference[:, num_classes:].norm(dim=1), **TOL)
    a, b = slice(0, 10), slice(10, None)
    expected = torch.cdist(reference[a].double(), reference[b].double()).pow(2).float()
    torch.testing.assert_close(last_layer_pairwise_sq_distances(e[a], h[a], e[b], h[b]), expected, **TOL)
    expected_nobias = torch.cdist(reference[a, num_classes:].double(), reference[b, num_classes:].double()).pow(2)
    torch.testing.assert_close(last_layer_pairwise_sq_distances(e[a], h[a], e[b], h[b], bias=False),
                               expected_nobias.float(), **TOL)


def test_pairwise_sq_distances_brute_force() -> None:
    torch.manual_seed(1)
    a, b = torch.randn(9, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    brute = torch.tensor([[float(((a[i] - b[j]) ** 2).sum()) for j in range(6)] for i in range(9)],
                         dtype=torch.float64)
    torch.testing.assert_close(pairwise_sq_distances(a, b), brute)
    assert (pairwise_sq_distances(a, a).diagonal() >= 0).all()


def test_forward_in_batches_matches_one_pass_and_restores_mode() -> None:
    model, x, _ = _setup(50)
    model.train()
    out = forward_in_batches(model, x, batch_size=16, with_features=True)
    assert model.training
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(out.logits, model(x), **TOL)
    assert out.features is not None and out.features.shape == (50, 84)


def test_bayesian_closed_form_matches_monte_carlo_at_small_posterior_noise() -> None:
    from coreselect.signals.laplace import bayesian_score, bayesian_score_closed_form, sample_logits, target_log_probs

    g = torch.Generator().manual_seed(0)
    n, c = 6, 4
    logits, val = torch.randn(n, c, generator=g) * 2, torch.randn(n, c, generator=g)
    targets = torch.randint(0, c, (n,), generator=g)
    root = torch.randn(c, c, generator=g, dtype=torch.float64)
    u = root @ root.T + c * torch.eye(c, dtype=torch.float64)  # a posterior precision of the logits
    inv_chol_t = torch.linalg.inv(torch.linalg.cholesky(u)).T
    for scale in (0.1, 1.0):
        variance = scale * torch.rand(n, generator=g, dtype=torch.float64)
        samples = sample_logits(logits, variance, inv_chol_t, 400_000, torch.Generator().manual_seed(1))
        val_log_p = target_log_probs(val, targets)
        monte_carlo = bayesian_score(samples, val_log_p, targets, alpha=0.2)
        closed = bayesian_score_closed_form(logits, variance, inv_chol_t, val_log_p, targets, alpha=0.2)
        mean_only = bayesian_score(logits[None], val_log_p, targets, alpha=0.2)
        # second order in the noise: an error far below the posterior's own effect on the score
        assert (closed - monte_carlo).abs().max() < 0.1 * (mean_only - monte_carlo).abs().max()
