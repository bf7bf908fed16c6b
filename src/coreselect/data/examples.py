"""The one interface of labelled training and test data: what the trainer and every strategy read.

Two implementations: :class:`~coreselect.data.dataset.InMemoryDataset` (tensors, the fast path for small data)
and :class:`~coreselect.data.streamed.StreamedDataset` (any map-style torch ``Dataset``, read on demand).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, Self, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class Examples(Protocol):
    """Labelled examples addressed by index: labels held, inputs gathered a batch at a time."""

    @property
    def targets(self) -> Tensor: ...

    @property
    def num_classes(self) -> int: ...

    @property
    def classes(self) -> tuple[str, ...]: ...

    @property
    def clean_targets(self) -> Tensor | None: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    @property
    def noise_mask(self) -> Tensor: ...

    def __len__(self) -> int: ...

    def __getitem__(self, indices: Tensor | Sequence[int]) -> tuple[Tensor, Tensor]:
        """Inputs and labels at ``indices``, on ``device``."""
        ...

    def chunks(self, batch_size: int, indices: Tensor | None = None) -> Iterator[Tensor]:
        """The inputs at ``indices`` (default: all, in order), ``batch_size`` at a time."""
        ...

    def class_counts(self) -> Tensor: ...

    def subset(self, indices: Tensor) -> Self: ...

    def with_targets(self, targets: Tensor) -> Self: ...

    def to(self, device: torch.device | str) -> Self: ...
