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
from coreselect.submodular.similarity import (
    check_similarity,
    distances_into,
    needs_global_max,
    self_value,
    subtract_from_max_,
)

FLOAT_BYTES = 4


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
            self._validate(matrix)
        self.n = matrix.shape[0]
        self.by_candidate = matrix if symmetric else matrix.T.contiguous()

    @staticmethod
    def _validate(matrix: Tensor) -> None:
        if not torch.isfinite(matrix).all():
            raise InvalidInputError("the similarity kernel has non-finite entries; check the embeddings")
        if (matrix < 0).any():
            raise InvalidInputError("facility location needs non-negative similarities; shift or clamp the kernel")

    def rows_into(self, candidates: Tensor, out: Tensor) -> Tensor:
        return torch.index_select(self.by_candidate, 0, candidates, out=out)

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
        self.global_max = torch.zeros((), dtype=self.x.dtype, device=self.x.device)
        self._initial: Tensor | None = None

    def _raw_into(self, candidates: Tensor, out: Tensor) -> Tensor:
        rows = distances_into(self.similarity, self.x[candidates], self.x, self.sq[candidates], self.sq, out)
        rows[torch.arange(len(candidates), device=rows.device), candidates] = self_value(self.similarity)
        return rows

    def initial_gains(self) -> Tensor:
        if self._initial is None:
            buffer = torch.empty(min(self.block, self.n), self.n, dtype=self.x.dtype, device=self.x.device)
            sums = []
            for start in range(0, self.n, self.block):
                chunk = torch.arange(start, min(start + self.block, self.n), device=self.x.device)
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


SYMMETRY_MIN_DIM = 64  # from this many features the product dominates: compute half the kernel and mirror it


def dense_similarity(embeddings: Tensor, similarity: str = "max_minus", block: int = 256) -> Tensor:
    """The full n×n similarity matrix of ``embeddings`` (symmetric), built ``block`` rows at a time in place."""
    check_similarity(similarity)
    x = _check_embeddings(embeddings)
    n, dim = x.shape
    sq = x.pow(2).sum(1)
    out = torch.empty(n, n, dtype=x.dtype, device=x.device)
    largest = torch.zeros((), dtype=x.dtype, device=x.device)
    half = dim >= SYMMETRY_MIN_DIM
    for start in range(0, n, block):
        stop = min(start + block, n)
        first = start if half else 0
        rows = distances_into(similarity, x[start:stop], x[first:], sq[start:stop], sq[first:], out[start:stop, first:])
        out[start:stop, start:stop].fill_diagonal_(self_value(similarity))  # exact, free of cancellation
        if half and start:
            out[start:stop, :start] = out[:start, start:stop].T
        largest = torch.maximum(largest, rows.max())
    return subtract_from_max_(out, largest) if needs_global_max(similarity) else out


def make_kernel(
    embeddings: Tensor, similarity: str = "max_minus", max_kernel_bytes: int = 2 << 30
) -> SimilarityKernel:
    """A dense kernel when n² floats fit in ``max_kernel_bytes``, else rows computed on demand."""
    n = embeddings.shape[0]
    if n * n * FLOAT_BYTES <= max_kernel_bytes:
        return DenseKernel(dense_similarity(embeddings, similarity), symmetric=True, validate=False)
    block = max(1, min(n, math.floor(max_kernel_bytes / (FLOAT_BYTES * max(n, 1)))))
    return EmbeddingKernel(embeddings, similarity, block=block)
