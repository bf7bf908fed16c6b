"""Ground sets for facility location: points in Euclidean space, or last-layer gradients in closed form.

Both give squared distances between blocks of rows; last-layer gradients never materialise their
C·d coordinates (the identity is in :mod:`coreselect.signals.gradients`).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from coreselect.errors import InvalidInputError
from coreselect.signals.gradients import last_layer_pairwise_sq_distances

Rows = Tensor | slice


def _finite(name: str, t: Tensor) -> Tensor:
    if t.ndim != 2:
        raise InvalidInputError(f"{name} must be a 2-d (points × features) tensor, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).any(1).sum())
        raise InvalidInputError(f"{bad} {name} row(s) hold NaN or infinite values; check the model's outputs")
    return t if t.is_floating_point() else t.float()


class Embedding(Protocol):
    n: int
    dim: int

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def device(self) -> torch.device: ...

    def select(self, indices: Tensor) -> Embedding:
        """The ground set restricted to ``indices``."""
        ...

    def sq_distances_into(self, rows: Rows, cols: Rows, out: Tensor) -> Tensor:
        """Squared distances between ``rows`` and ``cols`` written into ``out`` (clamped at 0)."""
        ...


class _Held:
    """An embedding's dtype and device: those of the tensor it holds its points in (``held``)."""

    held: Tensor

    @property
    def dtype(self) -> torch.dtype:
        return self.held.dtype

    @property
    def device(self) -> torch.device:
        return self.held.device


class EuclideanPoints(_Held):
    """Rows of a matrix, compared by Euclidean distance."""

    def __init__(self, points: Tensor) -> None:
        self.x = self.held = _finite("embedding", points)
        self.n, self.dim = self.x.shape
        self.sq = self.x.pow(2).sum(1)

    def select(self, indices: Tensor) -> EuclideanPoints:
        return EuclideanPoints(self.x[indices])

    def sq_distances_into(self, rows: Rows, cols: Rows, out: Tensor) -> Tensor:
        torch.addmm(self.sq[cols][None, :], self.x[rows], self.x[cols].T, alpha=-2.0, out=out)
        return out.add_(self.sq[rows][:, None]).clamp_(min=0.0)


class LastLayerGradients(_Held):
    """Per-example gradients of the final linear layer, [e, vec(e hᵀ)] (or vec(e hᵀ) without bias),
    given by logit gradients ``e`` (n×C) and penultimate features ``h`` (n×d)."""

    def __init__(self, logit_grads: Tensor, features: Tensor, bias: bool = True) -> None:
        self.e, self.h = _finite("logit-gradient", logit_grads), _finite("feature", features)
        if self.e.shape[0] != self.h.shape[0]:
            raise InvalidInputError(f"{self.e.shape[0]} logit gradients but {self.h.shape[0]} feature rows")
        self.bias = bias
        self.n = self.e.shape[0]
        self.dim = self.e.shape[1] * self.h.shape[1] + (self.e.shape[1] if bias else 0)
        self.held = self.e

    def select(self, indices: Tensor) -> LastLayerGradients:
        return LastLayerGradients(self.e[indices], self.h[indices], self.bias)

    def sq_distances_into(self, rows: Rows, cols: Rows, out: Tensor) -> Tensor:
        sq = last_layer_pairwise_sq_distances(self.e[rows], self.h[rows], self.e[cols], self.h[cols], self.bias)
        return out.copy_(sq)


def as_embedding(embeddings: Tensor | Embedding) -> Embedding:
    """Tensors are taken as Euclidean points."""
    return EuclideanPoints(embeddings) if isinstance(embeddings, Tensor) else embeddings
