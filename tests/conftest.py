"""Shared fixtures: small datasets the tests make themselves."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from coreselect.data import InMemoryDataset


def make_blobs(n: int = 600, num_classes: int = 4, side: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Separable image-shaped classes: class c brightens its own quadrant band of a noisy image."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n)
    x = rng.normal(0.0, 0.6, (n, 1, side, side)).astype(np.float32)
    band = side // num_classes
    for c in range(num_classes):
        x[y == c, :, c * band : (c + 1) * band, :] += 1.5
    return x, y.astype(np.int64)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) in the idx format, gzipped when the name ends in .gz."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture
def blobs() -> InMemoryDataset:
    x, y = make_blobs()
    return InMemoryDataset(torch.from_numpy(x), torch.from_numpy(y), num_classes=4)


@pytest.fixture
def npz_root(tmp_path: Path) -> Path:
    """A folder with train.npz (600 examples) and test.npz (200) of 4 separable classes."""
    x, y = make_blobs(800, seed=1)
    np.savez(tmp_path / "train.npz", x=x[:600], y=y[:600], classes=np.array(["a", "b", "c", "d"]))
    np.savez(tmp_path / "test.npz", x=x[600:], y=y[600:])
    return tmp_path


def assert_resumes_exact_stream(name: str, make_context, skip: int, take: int, **params: object) -> None:
    """A strategy restored from ``state_dict`` mid-run yields exactly the batches the original would."""
    import itertools

    from coreselect.strategies import create_strategy

    strategy = create_strategy(name, **params)
    strategy.setup(make_context())
    stream = strategy.batches()
    for _ in range(skip):
        next(stream)
    state = strategy.state_dict()
    expected = [b.indices.tolist() for b in itertools.islice(stream, take)]
    resumed = create_strategy(name, **params)
    resumed.setup(make_context())
    resumed.load_state_dict(state)
    assert [b.indices.tolist() for b in itertools.islice(resumed.batches(), take)] == expected
