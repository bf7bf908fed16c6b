"""Checks every labelled dataset applies to its labels."""

from __future__ import annotations

import torch
from torch import Tensor

from coreselect.errors import InvalidInputError


def check_labels(targets: Tensor, num_classes: int) -> None:
    """Labels must be a 1-d integer tensor of class indices in ``[0, num_classes)``."""
    if targets.ndim != 1 or targets.dtype.is_floating_point:
        raise InvalidInputError("labels must be a 1-d integer tensor of class indices")
    if num_classes < 1:
        raise InvalidInputError(f"num_classes must be positive, got {num_classes}")
    if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        raise InvalidInputError(
            f"labels must lie in [0, {num_classes - 1}] but range over "
            f"[{int(targets.min())}, {int(targets.max())}]; remap the labels or raise num_classes"
        )


def class_names(classes: tuple[str, ...], num_classes: int) -> tuple[str, ...]:
    """``classes``, or the class indices as names when none are given; one name per class."""
    if not classes:
        return tuple(str(c) for c in range(num_classes))
    if len(classes) != num_classes:
        raise InvalidInputError(f"{len(classes)} class names for {num_classes} classes")
    return classes


class Labelled:
    """What labelled datasets derive from their labels (``targets``, ``clean_targets``, ``num_classes``)."""

    targets: Tensor
    clean_targets: Tensor | None
    num_classes: int

    @property
    def noise_mask(self) -> Tensor:
        """True where the label was corrupted (all False when no noise was injected)."""
        if self.clean_targets is None:
            return torch.zeros_like(self.targets, dtype=torch.bool)
        return self.targets != self.clean_targets

    def class_counts(self) -> Tensor:
        """Training examples of each class."""
        return torch.bincount(self.targets.cpu(), minlength=self.num_classes)
