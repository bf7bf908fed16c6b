"""Closed forms for per-example gradients of the cross-entropy, never materialising outer products.

With logits z, p = softmax(z) and one-hot y, the logit gradient is e = p − y. The last-layer gradient
(bias and weight of the final linear layer with input h) is g = [e, vec(e hᵀ)], so
‖g_i‖² = ‖e_i‖² (1 + ‖h_i‖²) and
‖g_i − g_j‖² = ‖e_i − e_j‖² + ‖e_i‖²‖h_i‖² + ‖e_j‖²‖h_j‖² − 2 (e_i·e_j)(h_i·h_j).
Drop the bias terms with ``bias=False``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def per_example_losses(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy of each example."""
    return F.cross_entropy(logits, targets, reduction="none")


def weighted(losses: Tensor, weights: Tensor | None) -> Tensor:
    """Per-example ``losses`` times their ``weights`` (None: all 1): the one place a selection's weights meet
    the loss."""
    return losses if weights is None else losses * weights.to(losses.device)


def logit_gradients(logits: Tensor, targets: Tensor) -> Tensor:
    """∂CE/∂z = softmax(z) − onehot(y) for each example, shape (n, C)."""
    low_precision = logits.dtype in (torch.float16, torch.bfloat16)
    grads = torch.softmax(logits.float() if low_precision else logits, dim=1)
    grads[torch.arange(len(targets), device=grads.device), targets] -= 1.0
    return grads


def last_layer_gradients(logit_grads: Tensor, features: Tensor, bias: bool = True) -> Tensor:
    """Materialised last-layer gradients [e, vec(e hᵀ)], shape (n, C + C·d). Use only for small n·C·d."""
    weight = (logit_grads[:, :, None] * features[:, None, :]).flatten(1)
    return torch.cat([logit_grads, weight], dim=1) if bias else weight


def last_layer_gradient_norms(logit_grads: Tensor, features: Tensor, bias: bool = True) -> Tensor:
    """‖g_i‖₂ of the last-layer gradients, in O(n·(C + d))."""
    sq_h = features.pow(2).sum(1)
    return torch.sqrt(logit_grads.pow(2).sum(1) * (sq_h + 1.0 if bias else sq_h))


def pairwise_sq_distances(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances between the rows of ``a`` (m, k) and ``b`` (n, k), clamped at 0."""
    sq = a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2.0 * (a @ b.T)
    return sq.clamp_min_(0.0)


def last_layer_pairwise_sq_distances(
    e_a: Tensor, h_a: Tensor, e_b: Tensor, h_b: Tensor, bias: bool = True
) -> Tensor:
    """‖g_i − g_j‖² between last-layer gradients of rows of (e_a, h_a) and (e_b, h_b), shape (m, n).

    Costs two (m×n) matrix products instead of materialising the C·d-dimensional gradients.
    """
    sq_norm_a = e_a.pow(2).sum(1) * h_a.pow(2).sum(1)
    sq_norm_b = e_b.pow(2).sum(1) * h_b.pow(2).sum(1)
    ee = e_a @ e_b.T
    sq = sq_norm_a[:, None] + sq_norm_b[None, :] - 2.0 * ee * (h_a @ h_b.T)
    if bias:
        sq += e_a.pow(2).sum(1)[:, None] + e_b.pow(2).sum(1)[None, :] - 2.0 * ee
    return sq.clamp_min_(0.0)
