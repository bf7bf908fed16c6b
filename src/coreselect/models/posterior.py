"""Gaussian posterior samples around a model's weights, for selection forwards only.

``perturbed(model, sigma, ...)`` is a context manager: inside it the model computes with one draw of
w + σ·ε, ε ~ N(0, I), on the chosen parameters; on leaving it every parameter is restored bit for bit.
Targets (the stable-coresets paper's official code perturbs normalisation layers only):

- ``norm``: BatchNorm / GroupNorm affine parameters γ, β, and noise added element-wise to the output of
  every LayerNorm (as the official code does for transformers);
- ``all``: every trainable parameter;
- ``last``: the parameters of the last ``last_layers`` modules that own parameters (e.g. the classifier);
- ``auto``: ``norm`` when the model has normalisation layers, else ``all`` (LeNet and MLPs have none).

Use it with the model in eval mode (running statistics are then neither used for batch statistics nor
updated); one context is one draw, so draw again for each forward that needs fresh noise.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor, nn

PerturbTarget = Literal["auto", "norm", "all", "last"]
_AFFINE_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)


def has_normalisation(model: nn.Module) -> bool:
    return any(isinstance(m, (*_AFFINE_NORMS, nn.LayerNorm)) for m in model.modules())


def perturbed_parameters(model: nn.Module, target: PerturbTarget, last_layers: int = 1) -> list[Tensor]:
    """The parameters a ``target`` perturbs in place (LayerNorm outputs are perturbed by a hook instead)."""
    if target == "auto":
        target = "norm" if has_normalisation(model) else "all"
    if target == "norm":
        return [p for m in model.modules() if isinstance(m, _AFFINE_NORMS) for p in m.parameters(recurse=False)
                if p.requires_grad]
    if target == "all":
        return [p for p in model.parameters() if p.requires_grad]
    if target == "last":
        owners = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
        return [p for m in owners[-last_layers:] for p in m.parameters(recurse=False) if p.requires_grad]
    raise ValueError(f"unknown perturbation target {target!r}; use auto, norm, all or last")


def posterior_noise(like: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
    """σ·ε shaped like ``like``, ε ~ N(0, I) drawn from ``generator`` (on the CPU, then moved)."""
    return (torch.randn(like.shape, generator=generator, dtype=like.dtype) * sigma).to(like.device)


@contextmanager
def perturbed(model: nn.Module, sigma: float, *, target: PerturbTarget = "auto", last_layers: int = 1,
              generator: torch.Generator) -> Iterator[nn.Module]:
    """One posterior draw on ``model`` for the duration of the block; see the module docstring."""
    if sigma < 0:
        raise ValueError(f"sigma must be non-negative, got {sigma}")
    resolved = ("norm" if has_normalisation(model) else "all") if target == "auto" else target
    params = perturbed_parameters(model, resolved, last_layers)
    saved = [p.detach().clone() for p in params]
    hooks = []
    if resolved == "norm":
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                hooks.append(module.register_forward_hook(
                    lambda _m, _i, out: out + posterior_noise(out, sigma, generator)))
    try:
        with torch.no_grad():
            for p in params:
                p.add_(posterior_noise(p, sigma, generator))
        yield model
    finally:
        for h in hooks:
            h.remove()
        with torch.no_grad():
            for p, original in zip(params, saved, strict=True):
                p.copy_(original)
