"""An in-memory labelled dataset indexed by whole batches of indices."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from coreselect.data.labels import Labelled, check_labels, class_names
from coreselect.errors import InvalidInputError


def _rows(values: Tensor, indices: Tensor | slice) -> Tensor:
    """``values[indices]``; a vector of non-negative indices by ``index_select``, which copies the same rows in
    0.6× the time of advanced indexing or less on a CPU (Fashion-MNIST images: 12 against 43 µs for 128 rows, 107
    against 168 µs for 427, 281 against 473 µs for 1,024). On an accelerator, plain indexing: the check for
    negative indices would wait for the device at every batch."""
    if isinstance(indices, Tensor) and indices.device.type == "cpu" and indices.dim() == 1 \
            and indices.dtype == torch.long and not (len(indices) and bool(indices.min() < 0)):
        return values.index_select(0, indices)
    return values[indices]


@dataclass(frozen=True)
class InMemoryDataset(Labelled):
    """Inputs and integer labels held as tensors; ``ds[idx]`` gathers a whole batch at once.

    ``clean_targets`` holds the labels before any injected noise, so that ``noise_mask`` (and the noisy
    share of a selection) can be audited afterwards.
    """

    inputs: Tensor
    targets: Tensor
    num_classes: int
    classes: tuple[str, ...] = field(default=())
    clean_targets: Tensor | None = None

    def __post_init__(self) -> None:
        if self.inputs.shape[0] != self.targets.shape[0]:
            raise InvalidInputError(
                f"{self.inputs.shape[0]} inputs but {self.targets.shape[0]} labels; "
                "give one label per example"
            )
        check_labels(self.targets, self.num_classes)
        object.__setattr__(self, "classes", class_names(self.classes, self.num_classes))

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __getitem__(self, indices: Tensor | Sequence[int] | slice) -> tuple[Tensor, Tensor]:
        if not isinstance(indices, slice | Tensor):
            indices = torch.as_tensor(indices, dtype=torch.long)
        if isinstance(indices, Tensor) and indices.device != self.inputs.device:
            indices = indices.to(self.inputs.device)
        return _rows(self.inputs, indices), _rows(self.targets, indices)

    def chunks(self, batch_size: int, indices: Tensor | None = None) -> Iterator[Tensor]:
        """The inputs at ``indices`` (default: all, in order), ``batch_size`` at a time."""
        if indices is None:
            for start in range(0, len(self), batch_size):
                yield self.inputs[start:start + batch_size]
            return
        indices = torch.as_tensor(indices, dtype=torch.long).to(self.inputs.device)
        for start in range(0, len(indices), batch_size):
            yield _rows(self.inputs, indices[start:start + batch_size])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.inputs.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.inputs.device

    def subset(self, indices: Tensor) -> InMemoryDataset:
        """The examples at ``indices``, in that order."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        clean = None if self.clean_targets is None else self.clean_targets[indices.to(self.device)]
        x, y = self[indices]
        return replace(self, inputs=x, targets=y, clean_targets=clean)

    def with_targets(self, targets: Tensor) -> InMemoryDataset:
        """A copy with new labels; the current labels are kept as the clean ones."""
        clean = self.targets if self.clean_targets is None else self.clean_targets
        return replace(self, targets=targets, clean_targets=clean)

    def to(self, device: torch.device | str) -> InMemoryDataset:
        clean = None if self.clean_targets is None else self.clean_targets.to(device)
        return replace(self, inputs=self.inputs.to(device), targets=self.targets.to(device), clean_targets=clean)
