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


def self_value(name: str) -> float:
    """The pre-similarity of a point with itself (distance 0): exactly 0, or exp(0) = 1."""
    return 1.0 if name == "exp" else 0.0


def distances_into(name: str, a: Tensor, b: Tensor, sq_a: Tensor, sq_b: Tensor, out: Tensor) -> Tensor:
    """Write the convention's pre-similarity of rows of ``a`` against rows of ``b`` into ``out``.

    That is d² (``max_minus_squared``), d (``max_minus``), or the similarity exp(−d/dim) itself (``exp``);
    ``sq_a``, ``sq_b`` are the rows' squared norms. One matrix product, then in-place element-wise work.
    """
    torch.addmm(sq_b[None, :], a, b.T, alpha=-2.0, out=out)
    out.add_(sq_a[:, None]).clamp_(min=0.0)
    if name != "max_minus_squared":
        out.sqrt_()
    if name == "exp":
        out.mul_(-1.0 / a.shape[1]).exp_()
    return out


def subtract_from_max_(block: Tensor, global_max: Tensor | float) -> Tensor:
    """s = max − block, in place (for the conventions that need the global maximum)."""
    return torch.sub(torch.as_tensor(global_max, dtype=block.dtype, device=block.device), block, out=block)
