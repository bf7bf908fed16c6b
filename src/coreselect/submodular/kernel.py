"""Similarity oracles for facility location: a dense kernel, or rows computed on demand in bounded memory.

The greedy only needs, for a batch of candidates j, the similarities s_ij to every ground element i
(``candidate_rows``), and each candidate's gain on the empty set Σ_i s_ij (``initial_gains``).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor

from coreselect.errors import InvalidInputError
from coreselect.submodular.similarity import (
    check_similarity,
    distance_block,
    needs_global_max,
    similarity_from_block,
)

FLOAT_BYTES = 4


class SimilarityKernel(Protocol):
    n: int

    def candidate_rows(self, candidates: Tensor) -> Tensor:
        """(len(candidates), n): similarity of each candidate to every ground element."""
        ...

    def initial_gains(self) -> Tensor:
        """(n,): Σ_i s_ij for every candidate j, its gain when nothing is selected yet."""
        ...


class DenseKernel:
    """A precomputed similarity matrix ``matrix[i, j] = s_ij`` (ground element i, candidate j)."""

    def __init__(self, matrix: Tensor, symmetric: bool = False) -> None:
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise InvalidInputError(f"a similarity kernel must be square, got shape {tuple(matrix.shape)}")
        if not torch.isfinite(matrix).all():
            raise InvalidInputError("the similarity kernel has non-finite entries; check the embeddings")
        if (matrix < 0).any():
            raise InvalidInputError("facility location needs non-negative similarities; shift or clamp the kernel")
        self.n = matrix.shape[0]
        self.by_candidate = matrix if symmetric else matrix.T.contiguous()

    def candidate_rows(self, candidates: Tensor) -> Tensor:
        return self.by_candidate[candidates]

    def initial_gains(self) -> Tensor:
        return self.by_candidate.sum(1)


def _check_embeddings(embeddings: Tensor) -> Tensor:
    if embeddings.ndim != 2:
        raise InvalidInputError(f"embeddings must be a 2-d (points × features) tensor, got {tuple(embeddings.shape)}")
    if not torch.isfinite(embeddings).all():
        bad = int((~torch.isfinite(embeddings)).any(1).sum())
        raise InvalidInputError(f"{bad} embedding row(s) hold NaN or infinite values; check the model's outputs")
    return embeddings if embeddings.is_floating_point() else embeddings.float()


class EmbeddingKernel:
    """Similarities of Euclidean embeddings, computed ``block`` candidate rows at a time.

    Memory: O(n · block) floats besides the embeddings, never n².
    """

    def __init__(self, embeddings: Tensor, similarity: str = "max_minus", block: int = 1024) -> None:
        check_similarity(similarity)
        self.x = _check_embeddings(embeddings)
        self.n, self.similarity, self.block = self.x.shape[0], similarity, max(1, block)
        self.sq = self.x.pow(2).sum(1)
        self.global_max = 0.0
        self._initial: Tensor | None = None

    def _block(self, candidates: Tensor) -> Tensor:
        return distance_block(self.similarity, self.x[candidates], self.x, self.sq[candidates], self.sq)

    def initial_gains(self) -> Tensor:
        if self._initial is None:
            sums, block_max = [], torch.zeros((), dtype=self.x.dtype, device=self.x.device)
            for start in range(0, self.n, self.block):
                rows = self._block(torch.arange(start, min(start + self.block, self.n), device=self.x.device))
                sums.append(rows.sum(1))
                block_max = torch.maximum(block_max, rows.max())
            total = torch.cat(sums)
            if needs_global_max(self.similarity):
                self.global_max = float(block_max)
                total = self.n * self.global_max - total  # Σ_i (max − d_ij)
            self._initial = total
        return self._initial

    def candidate_rows(self, candidates: Tensor) -> Tensor:
        if needs_global_max(self.similarity) and self._initial is None:
            self.initial_gains()
        return similarity_from_block(self.similarity, self._block(candidates), self.global_max)


def dense_similarity(embeddings: Tensor, similarity: str = "max_minus", block: int = 2048) -> Tensor:
    """The full n×n similarity matrix of ``embeddings`` (symmetric), built ``block`` rows at a time."""
    check_similarity(similarity)
    x = _check_embeddings(embeddings)
    n, sq = x.shape[0], x.pow(2).sum(1)
    out = torch.empty(n, n, dtype=x.dtype, device=x.device)
    for start in range(0, n, block):
        stop = min(start + block, n)
        out[start:stop] = distance_block(similarity, x[start:stop], x, sq[start:stop], sq)
    if needs_global_max(similarity):
        largest = out.max()
        out.neg_().add_(largest)  # max − d, in place
    return out


def make_kernel(
    embeddings: Tensor, similarity: str = "max_minus", max_kernel_bytes: int = 1 << 30
) -> SimilarityKernel:
    """A dense kernel when n² floats fit in ``max_kernel_bytes``, else rows computed on demand."""
    n = embeddings.shape[0]
    if n * n * FLOAT_BYTES <= max_kernel_bytes:
        return DenseKernel(dense_similarity(embeddings, similarity), symmetric=True)
    block = max(1, min(n, math.floor(max_kernel_bytes / (FLOAT_BYTES * max(n, 1)))))
    return EmbeddingKernel(embeddings, similarity, block=block)
