"""Hutchinson estimates of the Hessian diagonal: diag(H) ≈ E_z[z ⊙ Hz] with Rademacher probes z."""

from __future__ import annotations

import torch
from torch import Tensor

from coreselect.errors import InvalidInputError


def rademacher_like(t: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A tensor of ±1 with the shape of ``t``."""
    signs = torch.randint(0, 2, t.shape, generator=generator, dtype=torch.int8).to(t.device)
    return signs.to(t.dtype).mul_(2).sub_(1)


def gradient_and_hessian_diagonal(
    loss: Tensor, params: list[Tensor], probes: int = 1, generator: torch.Generator | None = None
) -> tuple[list[Tensor], list[Tensor]]:
    """∇loss and a Hutchinson estimate of diag(∇²loss) averaged over ``probes`` Rademacher probes.

    One backward with ``create_graph=True``, then one Hessian-vector product per probe.
    """
    grads = torch.autograd.grad(loss, params, create_graph=True)
    diagonal = [torch.zeros_like(p) for p in params]
    for probe in range(probes):
        zs = [rademacher_like(p, generator) for p in params]
        try:
            hz = torch.autograd.grad(grads, params, grad_outputs=zs, retain_graph=probe < probes - 1)
        except RuntimeError as error:
            if "is not implemented" not in str(error):
                raise
            raise InvalidInputError(f"the Hessian diagonal needs second derivatives of the model, and one of its "
                                    f"operations has none ({str(error).splitlines()[0]}); use layers with a double "
                                    "backward (Hugging Face models: attn_implementation='eager')") from None
        for d, z, h in zip(diagonal, zs, hz, strict=True):
            d.add_(z * h, alpha=1.0 / probes)
    return [g.detach() for g in grads], diagonal
