"""Distance-to-similarity conventions of facility location.

All map Euclidean distances d (or squared distances) to non-negative similarities; the argmax
assignment of points to selected elements is the same for every monotone map, the greedy picks may not be.

- ``max_minus``: s = max(d) − d, the original CRAIG code's convention;
- ``max_minus_squared``: s = max(d²) − d², apricot's ``metric="euclidean"``;
- ``exp``: s = exp(−d / dim), submodlib's Euclidean kernel (its C++ ``euclidean_similarity``; the FL
  that CREST calls).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from coreselect.errors import InvalidInputError

SimilarityName = Literal["max_minus", "max_minus_squared", "exp"]
SIMILARITIES: tuple[str, ...] = ("max_minus", "max_minus_squared", "exp")


def check_similarity(name: str) -> None:
    if name not in SIMILARITIES:
        raise InvalidInputError(f"unknown similarity {name!r}; valid names: {', '.join(SIMILARITIES)}")


def needs_global_max(name: str) -> bool:
    """Whether the similarity subtracts from the largest distance over the whole ground set."""
    return name != "exp"


def self_value(name: str) -> float:
    """The pre-similarity of a point with itself (distance 0): exactly 0, or exp(0) = 1."""
    return 1.0 if name == "exp" else 0.0


def transform_(name: str, sq_distances: Tensor, dim: int) -> Tensor:
    """Squared distances to the convention's pre-similarity, in place: d², d, or exp(−d/dim) itself."""
    if name != "max_minus_squared":
        sq_distances.sqrt_()
    if name == "exp":
        sq_distances.mul_(-1.0 / dim).exp_()
    return sq_distances


def subtract_from_max_(block: Tensor, global_max: Tensor | float) -> Tensor:
    """s = max − block, in place (for the conventions that need the global maximum)."""
    return torch.sub(torch.as_tensor(global_max, dtype=block.dtype, device=block.device), block, out=block)
