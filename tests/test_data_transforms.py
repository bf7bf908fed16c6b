"""Splits, label noise and imbalance."""

from __future__ import annotations

import pytest
import torch

from coreselect.data import (
    DataSplits,
    InMemoryDataset,
    add_label_noise,
    long_tailed_indices,
    prepare_splits,
    stratified_split,
)
from coreselect.errors import InvalidInputError


def _labels(counts: list[int]) -> torch.Tensor:
    return torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])[torch.randperm(sum(counts))]


def test_stratified_split_is_disjoint_stratified_and_seeded() -> None:
    targets = _labels([100, 50, 30])
    kept, held = stratified_split(targets, 0.2, seed=3)
    assert len(set(kept.tolist()) & set(held.tolist())) == 0 and len(kept) + len(held) == 180
    assert torch.bincount(targets[held], minlength=3).tolist() == [20, 10, 6]
    assert torch.equal(held, stratified_split(targets, 0.2, seed=3)[1])
    assert not torch.equal(held, stratified_split(targets, 0.2, seed=4)[1])
    with pytest.raises(InvalidInputError, match=r"\[0, 1\)"):
        stratified_split(targets, 1.0, seed=0)


@pytest.mark.parametrize("kind", ["symmetric", "uniform", "pair"])
def test_label_noise_kinds(kind: str) -> None:
    targets = _labels([500] * 5)
    noisy = add_label_noise(targets, 5, 0.4, kind, seed=0)
    changed = noisy != targets
    if kind == "symmetric":
        assert int(changed.sum()) == 1000  # every chosen label moves to another class
        moved_to = (noisy[changed] - targets[changed]) % 5
        assert set(torch.unique(moved_to).tolist()) == {1, 2, 3, 4}
    elif kind == "uniform":
        # redrawn over all 5 classes: about 1/5 of the 1000 chosen keep their class
        assert 700 < int(changed.sum()) < 900
    else:
        assert int(changed.sum()) == 1000
        assert torch.equal(noisy[changed], (targets[changed] + 1) % 5)
    assert torch.equal(noisy, add_label_noise(targets, 5, 0.4, kind, seed=0))


def test_label_noise_rejects_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="valid kinds"):
        add_label_noise(torch.zeros(4, dtype=torch.long), 2, 0.1, "gaussian", seed=0)
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        add_label_noise(torch.zeros(4, dtype=torch.long), 2, 1.5, "symmetric", seed=0)


def test_long_tailed_profile() -> None:
    targets = _labels([200] * 5)
    kept = long_tailed_indices(targets, 5, ratio=100.0, seed=0)
    counts = torch.bincount(targets[kept], minlength=5).tolist()
    assert counts == [int(200 * 100 ** (-c / 4)) for c in range(5)] == [200, 63, 20, 6, 2]
    assert len(long_tailed_indices(targets, 5, ratio=1.0, seed=0)) == 1000
    with pytest.raises(InvalidInputError, match=">= 1"):
        long_tailed_indices(targets, 5, ratio=0.5, seed=0)


def test_prepare_splits_keeps_validation_clean_and_records_noise() -> None:
    x = torch.randn(1000, 3)
    y = _labels([250] * 4)
    data = InMemoryDataset(x, y, 4)
    splits = prepare_splits(DataSplits("toy", data, data), val_fraction=0.2, label_noise=0.3, seed=1)
    assert splits.val is not None and len(splits.val) == 200 and len(splits.train) == 800
    assert not splits.val.noise_mask.any()
    mask = splits.train.noise_mask
    assert int(mask.sum()) == 240
    assert splits.train.clean_targets is not None
    # the clean labels are the original ones: find each training row in the original data
    rows = {tuple(r.tolist()): i for i, r in enumerate(x)}
    original = torch.tensor([int(y[rows[tuple(r.tolist())]]) for r in splits.train.inputs])
    assert torch.equal(splits.train.clean_targets, original)
    assert torch.equal(mask, splits.train.targets != original)


def test_dataset_rejects_mismatches() -> None:
    with pytest.raises(InvalidInputError, match="one label per example"):
        InMemoryDataset(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long), 2)
    with pytest.raises(InvalidInputError, match="labels must lie in"):
        InMemoryDataset(torch.zeros(3, 2), torch.tensor([0, 1, 2]), 2)
    with pytest.raises(InvalidInputError, match="integer"):
        InMemoryDataset(torch.zeros(3, 2), torch.tensor([0.0, 1.0, 1.0]), 2)
