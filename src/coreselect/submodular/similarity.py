"""Distance-to-similarity conventions of facility location on embeddings.

All map Euclidean distances d (or squared distances) to non-negative similarities; the argmax
assignment of points to selected elements is the same for every monotone map, the greedy picks may not be.

- ``max_minus``: s = max(d) − d, the original CRAIG code's convention;
- ``max_minus_squared``: s = max(d²) − d², apricot's ``metric="euclidean"``;
- ``exp``: s = exp(−d / dim), submodlib's Euclidean kernel (the one CREST's FL uses).
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


def squared_distances(a: Tensor, b: Tensor, sq_a: Tensor | None = None, sq_b: Tensor | None = None) -> Tensor:
    """‖a_i − b_j‖² for rows of ``a`` and ``b`` via one matrix product, clamped at 0."""
    sq_a = a.pow(2).sum(1) if sq_a is None else sq_a
    sq_b = b.pow(2).sum(1) if sq_b is None else sq_b
    out = torch.addmm(sq_b[None, :], a, b.T, alpha=-2.0).add_(sq_a[:, None])
    return out.clamp_min_(0.0)


def distance_block(name: str, a: Tensor, b: Tensor, sq_a: Tensor | None = None, sq_b: Tensor | None = None) -> Tensor:
    """The quantity the convention subtracts from its maximum (d or d²); for ``exp``, the similarity itself."""
    sq = squared_distances(a, b, sq_a, sq_b)
    if name == "max_minus_squared":
        return sq
    d = sq.sqrt_()
    if name == "max_minus":
        return d
    return d.mul_(-1.0 / a.shape[1]).exp_()


def similarity_from_block(name: str, block: Tensor, global_max: float) -> Tensor:
    """Turn a :func:`distance_block` into similarities, in place."""
    if needs_global_max(name):
        return block.neg_().add_(global_max)
    return block
