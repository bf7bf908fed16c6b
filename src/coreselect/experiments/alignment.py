"""What loss-trajectory correlation looks like, recorded when a run that scores by validation-loss trajectories
(LTC) ends: for a few validation examples, the training examples whose loss moves most with theirs ("aligned",
most positive correlation) and most against ("conflicting", most negative), their inputs and loss curves — the
picture of the LTC paper's Figures 1–2, which the report draws from the store alone.

:func:`aligned_examples` picks the examples (pure tensor code); :func:`alignment_record` gathers what the
figure shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from coreselect.data.examples import Examples
from coreselect.errors import InvalidInputError
from coreselect.signals import pairwise_trajectory_correlation

ALIGNMENT = "alignment"  # the record's name in the results store


@dataclass(frozen=True)
class Alignment:
    """Chosen validation examples and, for each, its ``k`` most aligned and most conflicting training examples."""

    val_indices: Tensor  # [m]
    positive: Tensor  # [m, k] training indices, most positive correlation first
    negative: Tensor  # [m, k] training indices, most negative correlation first
    positive_correlation: Tensor  # [m, k]
    negative_correlation: Tensor  # [m, k]


def aligned_examples(train_losses: Tensor, val_losses: Tensor, val_targets: Tensor, *, per_class: int = 1,
                     k: int = 5, differences: bool = True, seed: int = 0) -> Alignment:
    """``per_class`` random validation examples of every class and their extreme training examples.

    Correlations are Pearson correlations of the loss trajectories ([points, examples], first differences
    when ``differences``), taken against the whole training pool, whatever its class.
    """
    if per_class < 1 or k < 1:
        raise InvalidInputError(f"per_class and k must be positive, got {per_class} and {k}")
    if k > train_losses.shape[1]:
        raise InvalidInputError(f"k={k} exceeds the {train_losses.shape[1]} training examples")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(val_targets), generator=generator)
    chosen = [order[val_targets[order] == c][:per_class] for c in torch.unique(val_targets).tolist()]
    val_indices = torch.cat(chosen)
    corr = pairwise_trajectory_correlation(train_losses, val_losses[:, val_indices], differences=differences)
    top = corr.topk(k, dim=1)
    bottom = corr.topk(k, dim=1, largest=False)
    return Alignment(val_indices, top.indices, bottom.indices, top.values, bottom.values)


def alignment_record(train_losses: Tensor, val_losses: Tensor, train: Examples, val: Examples, *,
                     per_class: int = 1, k: int = 5, differences: bool = True, seed: int = 0) -> dict[str, Any]:
    """What the alignment figure shows, for the results store: the chosen examples' inputs, correlations, loss
    curves ([points, examples]) and class names, for ``per_class`` validation examples of every class."""
    alignment = aligned_examples(train_losses, val_losses, val.targets.cpu(), per_class=per_class, k=k,
                                 differences=differences, seed=seed)
    m = len(alignment.val_indices)
    train_rows = torch.cat([alignment.positive, alignment.negative], dim=1).reshape(-1)
    train_inputs = train[train_rows][0].cpu().float().reshape(m, 2 * k, *train.input_shape)
    classes = [int(c) for c in val.targets[alignment.val_indices.to(val.targets.device)].tolist()]
    return {
        "val_inputs": val[alignment.val_indices][0].cpu().float(), "train_inputs": train_inputs,  # [m, …], [m, 2k, …]
        "correlation": torch.cat([alignment.positive_correlation, alignment.negative_correlation], dim=1),
        "val_curves": val_losses[:, alignment.val_indices],  # [points, m]
        "train_curves": train_losses[:, train_rows].reshape(-1, m, 2 * k),  # [points, m, 2k]
        "names": [val.classes[c] if val.classes else f"class {c}" for c in classes],
    }
