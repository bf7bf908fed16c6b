"""Loss-trajectory correlation (LTC; its revision CLD): how each training example's loss moves with the
validation loss of its class, from losses recorded during one training run, in batched closed form.

For an example i of class c with loss series x_i(t) (or its first differences, the CLD variant):
- ``class_mean`` (CLD's official code): Pearson(x_i, v̄_c), v̄_c the mean validation series of class c;
- ``pair_mean`` (LTC's pairwise reading): the mean over validation examples j of class c of
  Pearson(x_i, v_j), which equals the inner product of z(x_i) with the mean of the z-scored v_j / T.
Series are z-scored with the population standard deviation; a constant series gets standard deviation 1.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from coreselect.errors import InvalidInputError

Aggregation = Literal["class_mean", "pair_mean"]


def zscore(series: Tensor) -> Tensor:
    """Columns of ``series`` [T, n] centred and divided by their population std (1 where it is 0)."""
    centred = series - series.mean(0, keepdim=True)
    std = centred.pow(2).mean(0, keepdim=True).sqrt()
    return centred / torch.where(std > 0, std, torch.ones_like(std))


def _series(train_losses: Tensor, val_losses: Tensor, differences: bool) -> tuple[Tensor, Tensor]:
    """Validated float64 series (first differences when asked) of the training and validation trajectories."""
    if train_losses.ndim != 2 or val_losses.ndim != 2 or train_losses.shape[0] != val_losses.shape[0]:
        raise InvalidInputError(f"loss trajectories must be [points, examples] with the same number of points, "
                                f"got {tuple(train_losses.shape)} and {tuple(val_losses.shape)}")
    if train_losses.shape[0] < (3 if differences else 2):
        raise InvalidInputError(f"{train_losses.shape[0]} recording points are too few for a correlation")
    if not torch.isfinite(train_losses).all() or not torch.isfinite(val_losses).all():
        raise InvalidInputError("loss trajectories hold NaN (examples not presented between recordings); "
                                "record with train_losses='eval' or from a full-data run")
    x, v = train_losses.double(), val_losses.double()
    if differences:
        x, v = x.diff(dim=0), v.diff(dim=0)
    return x, v


def pairwise_trajectory_correlation(train_losses: Tensor, val_losses: Tensor, *, differences: bool = True) -> Tensor:
    """Pearson correlation of every validation trajectory with every training one, shape [n_val, n_train].

    Meant for a few validation examples (what the report shows): the result is dense.
    """
    x, v = _series(train_losses, val_losses, differences)
    return (zscore(v).T @ zscore(x) / x.shape[0]).float()


def trajectory_correlation(
    train_losses: Tensor,
    train_targets: Tensor,
    val_losses: Tensor,
    val_targets: Tensor,
    *,
    differences: bool = True,
    aggregation: Aggregation = "class_mean",
) -> Tensor:
    """LTC score of every training example (see the module docstring), shape [n_train].

    ``train_losses`` [T, n_train] and ``val_losses`` [T, n_val] are recorded at the same T points.
    """
    x, v = _series(train_losses, val_losses, differences)
    if train_losses.shape[1] != len(train_targets) or val_losses.shape[1] != len(val_targets):
        raise InvalidInputError("one target per trajectory column is needed")
    num_classes = int(max(int(train_targets.max()), int(val_targets.max()))) + 1
    one_hot = torch.nn.functional.one_hot(val_targets.long(), num_classes).double()  # [n_val, C]
    counts = one_hot.sum(0)
    missing = [c for c in torch.unique(train_targets).tolist() if counts[c] == 0]
    if missing:
        raise InvalidInputError(f"classes {missing} have training examples but no validation example")
    if aggregation == "class_mean":
        reference = zscore(v @ one_hot / counts.clamp_min(1))  # z-scored class-mean validation series [T, C]
    elif aggregation == "pair_mean":
        reference = zscore(v) @ one_hot / counts.clamp_min(1)  # class mean of the z-scored series [T, C]
    else:
        raise InvalidInputError(f"unknown aggregation {aggregation!r}; use class_mean or pair_mean")
    return (zscore(x) * reference[:, train_targets.long()]).mean(0).float()
