"""Label noise and class imbalance, injected reproducibly for robustness benchmarks."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from coreselect.errors import InvalidInputError

NOISE_KINDS = ("symmetric", "uniform", "pair")


def add_label_noise(targets: Tensor, num_classes: int, rate: float, kind: str, seed: int) -> Tensor:
    """Corrupt a ``rate`` fraction of labels (chosen uniformly at random) and return the new labels.

    - ``symmetric``: a corrupted label moves to a *different* class, uniformly;
    - ``uniform``: a corrupted label is redrawn uniformly over all classes (it may stay the same);
    - ``pair``: class ``c`` moves to ``(c + 1) mod C`` (asymmetric noise).

    Compare the result with ``targets`` to get the noise mask.
    """
    if kind not in NOISE_KINDS:
        raise InvalidInputError(f"unknown label-noise kind {kind!r}; valid kinds: {', '.join(NOISE_KINDS)}")
    if not 0.0 <= rate <= 1.0:
        raise InvalidInputError(f"label-noise rate must lie in [0, 1], got {rate}")
    if num_classes < 2 and rate > 0:
        raise InvalidInputError("label noise needs at least two classes")
    targets = targets.cpu()
    generator = torch.Generator().manual_seed(seed)
    n_noisy = round(rate * len(targets))
    chosen = torch.randperm(len(targets), generator=generator)[:n_noisy]
    noisy = targets.clone()
    if kind == "symmetric":
        shift = torch.randint(1, num_classes, (n_noisy,), generator=generator)
        noisy[chosen] = (targets[chosen] + shift) % num_classes
    elif kind == "uniform":
        noisy[chosen] = torch.randint(0, num_classes, (n_noisy,), generator=generator)
    else:
        noisy[chosen] = (targets[chosen] + 1) % num_classes
    return noisy


def long_tailed_indices(targets: Tensor, num_classes: int, ratio: float, seed: int) -> Tensor:
    """Indices of a long-tailed subsample: class ``c`` keeps ``n_max · ratio^(-c/(C-1))`` examples.

    ``ratio`` is the imbalance ratio n_max / n_min (1 keeps every example). Classes are ranked by label,
    as in the long-tailed CIFAR benchmarks. The result is sorted.
    """
    if ratio < 1.0 or not math.isfinite(ratio):
        raise InvalidInputError(f"imbalance ratio must be >= 1 (n_max / n_min), got {ratio}")
    targets = targets.cpu()
    counts = torch.bincount(targets, minlength=num_classes)
    n_max = int(counts.max())
    generator = torch.Generator().manual_seed(seed)
    kept = []
    for c in range(num_classes):
        members = torch.nonzero(targets == c).squeeze(1)
        exponent = c / (num_classes - 1) if num_classes > 1 else 0.0
        quota = min(len(members), max(1, int(n_max * ratio ** (-exponent))))
        kept.append(members[torch.randperm(len(members), generator=generator)[:quota]])
    return torch.sort(torch.cat(kept)).values
