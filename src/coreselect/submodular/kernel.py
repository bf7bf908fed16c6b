"""Similarity oracles for facility location: a dense kernel, or rows computed on demand in bounded memory.

The greedy only needs, for a batch of candidates j, the similarities s_ij to every ground element i
(``rows_into``), and each candidate's gain on the empty set Σ_i s_ij (``initial_gains``).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor

from coreselect.errors import InvalidInputError
from coreselect.submodular.embeddings import Embedding, as_embedding
from coreselect.submodular.similarity import (
    check_similarity,
    needs_global_max,
    self_value,
    subtract_from_max_,
    transform_,
)

FLOAT_BYTES = 4
DEFAULT_MAX_KERNEL_BYTES = 2 << 30  # 2 GiB: a dense kernel for up to 23,170 points, rows on demand beyond
SYMMETRY_MIN_DIM = 64  # from this many features the product dominates: compute half the kernel and mirror it


class SimilarityKernel(Protocol):
    n: int

    def rows_into(self, candidates: Tensor, out: Tensor) -> Tensor:
        """Write the similarities of each candidate to every ground element into ``out`` (len × n)."""
        ...

    def initial_gains(self) -> Tensor:
        """(n,): Σ_i s_ij for every candidate j, its gain when nothing is selected yet."""
        ...


class DenseKernel:
    """A precomputed similarity matrix ``matrix[i, j] = s_ij`` (ground element i, candidate j)."""

    def __init__(self, matrix: Tensor, symmetric: bool = False, validate: bool = True) -> None:
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise InvalidInputError(f"a similarity kernel must be square, got shape {tuple(matrix.shape)}")
        if validate:
            if not torch.isfinite(matrix).all():
                raise InvalidInputError("the similarity kernel has non-finite entries; check the embeddings")
            if (matrix < 0).any():
                raise InvalidInputError("facility location needs non-negative similarities; shift or clamp the kernel")
        self.n = matrix.shape[0]
        self.by_candidate = matrix if symmetric else matrix.T.contiguous()

    def rows_into(self, candidates: Tensor, out: Tensor) -> Tensor:
        return torch.index_select(self.by_candidate, 0, candidates, out=out)

    def initial_gains(self) -> Tensor:
        return self.by_candidate.sum(1)


def _pre_similarity_into(similarity: str, ground: Embedding, rows: Tensor | slice, cols: Tensor | slice,
                         out: Tensor) -> Tensor:
    return transform_(similarity, ground.sq_distances_into(rows, cols, out), ground.dim)


class EmbeddingKernel:
    """Similarities computed from the ground set ``block`` candidate rows at a time.

    Memory: O(n · block) floats besides the embeddings, never n².
    """

    def __init__(self, embeddings: Tensor | Embedding, similarity: str = "max_minus", block: int = 1024) -> None:
        check_similarity(similarity)
        self.ground = as_embedding(embeddings)
        self.n, self.similarity, self.block = self.ground.n, similarity, max(1, block)
        self.global_max = torch.zeros((), dtype=self.ground.dtype, device=self.ground.device)
        self._initial: Tensor | None = None

    def _raw_into(self, candidates: Tensor, out: Tensor) -> Tensor:
        rows = _pre_similarity_into(self.similarity, self.ground, candidates, slice(None), out)
        rows[torch.arange(len(candidates), device=rows.device), candidates] = self_value(self.similarity)
        return rows

    def initial_gains(self) -> Tensor:
        if self._initial is None:
            g = self.ground
            buffer = torch.empty(min(self.block, self.n), self.n, dtype=g.dtype, device=g.device)
            sums = []
            for start in range(0, self.n, self.block):
                chunk = torch.arange(start, min(start + self.block, self.n), device=g.device)
                rows = self._raw_into(chunk, buffer[: len(chunk)])
                sums.append(rows.sum(1))
                self.global_max = torch.maximum(self.global_max, rows.max())
            total = torch.cat(sums)
            if needs_global_max(self.similarity):
                total = self.n * self.global_max - total  # Σ_i (max − d_ij)
            self._initial = total
        return self._initial

    def rows_into(self, candidates: Tensor, out: Tensor) -> Tensor:
        self.initial_gains()  # fixes the global maximum
        rows = self._raw_into(candidates, out)
        return subtract_from_max_(rows, self.global_max) if needs_global_max(self.similarity) else rows


def dense_similarity(embeddings: Tensor | Embedding, similarity: str = "max_minus", block: int = 256) -> Tensor:
    """The full n×n similarity matrix of the ground set (symmetric), built ``block`` rows at a time in place."""
    check_similarity(similarity)
    ground = as_embedding(embeddings)
    n = ground.n
    out = torch.empty(n, n, dtype=ground.dtype, device=ground.device)
    largest = torch.zeros((), dtype=ground.dtype, device=ground.device)
    half = ground.dim >= SYMMETRY_MIN_DIM
    for start in range(0, n, block):
        stop = min(start + block, n)
        first = start if half else 0
        rows = _pre_similarity_into(similarity, ground, slice(start, stop), slice(first, n), out[start:stop, first:])
        out[start:stop, start:stop].fill_diagonal_(self_value(similarity))  # exact, free of cancellation
        if half and start:
            out[start:stop, :start] = out[:start, start:stop].T
        largest = torch.maximum(largest, rows.max())
    return subtract_from_max_(out, largest) if needs_global_max(similarity) else out


def make_kernel(
    embeddings: Tensor | Embedding, similarity: str = "max_minus", max_kernel_bytes: int = DEFAULT_MAX_KERNEL_BYTES
) -> SimilarityKernel:
    """A dense kernel when n² floats fit in ``max_kernel_bytes``, else rows computed on demand."""
    ground = as_embedding(embeddings)
    n = ground.n
    if n * n * FLOAT_BYTES <= max_kernel_bytes:
        return DenseKernel(dense_similarity(ground, similarity), symmetric=True, validate=False)
    block = max(1, min(n, math.floor(max_kernel_bytes / (FLOAT_BYTES * max(n, 1)))))
    return EmbeddingKernel(ground, similarity, block=block)
