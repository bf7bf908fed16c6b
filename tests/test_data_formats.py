"""Loaders for the standard formats, each on small files written here."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_idx
from coreselect.data import load_dataset, read_idx
from coreselect.data.catalog import FASHION_MNIST_DIR
from coreselect.errors import DatasetNotFoundError, InvalidInputError


def _expected_standardised(train: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Independent per-channel standardisation with the training statistics (numpy, float64)."""
    t = train.astype(np.float64) / 255.0
    axes = (0, *range(2, t.ndim))
    mean, std = t.mean(axis=axes, keepdims=True), t.std(axis=axes, ddof=1, keepdims=True)
    return (x.astype(np.float64) / 255.0 - mean) / std


@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip_and_dataset(tmp_path: Path, gz: bool) -> None:
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    train_x = rng.integers(0, 256, (30, 6, 5), dtype=np.uint8)
    train_y = rng.integers(0, 3, 30, dtype=np.uint8)
    test_x = rng.integers(0, 256, (10, 6, 5), dtype=np.uint8)
    test_y = rng.integers(0, 3, 10, dtype=np.uint8)
    for name, arr in [("train-images-idx3-ubyte", train_x), ("train-labels-idx1-ubyte", train_y),
                      ("t10k-images-idx3-ubyte", test_x), ("t10k-labels-idx1-ubyte", test_y)]:
        write_idx(tmp_path / (name + suffix), arr)
    assert np.array_equal(read_idx(tmp_path / ("train-images-idx3-ubyte" + suffix)), train_x)
    splits = load_dataset("idx", tmp_path, num_classes=3)
    assert splits.train.input_shape == (1, 6, 5) and len(splits.test) == 10
    assert torch.equal(splits.train.targets, torch.from_numpy(train_y.astype(np.int64)))
    expected = _expected_standardised(train_x[:, None], test_x[:, None])
    np.testing.assert_allclose(splits.test.inputs.numpy(), expected, atol=1e-5)


def test_idx_rejects_bad_magic(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(InvalidInputError, match="not an idx file"):
        read_idx(tmp_path / "bad")


def test_npz_channels_last_and_tabular(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (20, 7, 7, 3), dtype=np.uint8)  # N×H×W×C
    y = np.arange(20) % 5
    np.savez(tmp_path / "train.npz", x=x, y=y, classes=np.array(["a", "b", "c", "d", "e"]))
    np.savez(tmp_path / "test.npz", x=x[:4], y=y[:4])
    splits = load_dataset("npz", tmp_path)
    assert splits.train.input_shape == (3, 7, 7) and splits.train.num_classes == 5
    expected = _expected_standardised(x.transpose(0, 3, 1, 2), x[:4].transpose(0, 3, 1, 2))
    np.testing.assert_allclose(splits.test.inputs.numpy(), expected, atol=1e-5)

    feats = rng.normal(size=(20, 6)).astype(np.float32)
    np.savez(tmp_path / "train.npz", x=feats, y=y, classes=np.array(["a", "b", "c", "d", "e"]))
    np.savez(tmp_path / "test.npz", x=feats[:4], y=y[:4])
    splits = load_dataset("npz", tmp_path)
    assert splits.train.input_shape == (6,)
    np.testing.assert_allclose(splits.train.inputs.mean(0).numpy(), 0.0, atol=1e-5)


def test_npz_missing_arrays_and_labels(tmp_path: Path) -> None:
    np.savez(tmp_path / "train.npz", inputs=np.zeros((3, 2)), y=np.zeros(3, dtype=int))
    np.savez(tmp_path / "test.npz", x=np.zeros((3, 2)), y=np.zeros(3, dtype=int))
    with pytest.raises(InvalidInputError, match=r"lacks array\(s\) \['x'\]"):
        load_dataset("npz", tmp_path)
    np.savez(tmp_path / "train.npz", x=np.zeros((3, 2)), y=np.array([0, -1, 1]))
    with pytest.raises(InvalidInputError, match=r"train labels -1 lie outside the 2 classes 0..1"):
        load_dataset("npz", tmp_path, num_classes=2)
    with pytest.raises(InvalidInputError, match="declares no classes; pass --num-classes"):
        load_dataset("npz", tmp_path)


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_cifar_pickles(tmp_path: Path, variant: str) -> None:
    rng = np.random.default_rng(2)
    classes = [f"c{i}" for i in range(7)]
    def batch(n: int, key: str) -> dict:
        return {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), key: list(rng.integers(0, 7, n))}
    if variant == "cifar10":
        parts = [batch(8, "labels") for _ in range(5)]
        for i, part in enumerate(parts, 1):
            (tmp_path / f"data_batch_{i}").write_bytes(pickle.dumps(part))
        test = batch(5, "labels")
        (tmp_path / "test_batch").write_bytes(pickle.dumps(test))
        (tmp_path / "batches.meta").write_bytes(pickle.dumps({"label_names": classes}))
        train_y = np.concatenate([p["labels"] for p in parts])
    else:
        train = batch(40, "fine_labels")
        (tmp_path / "train").write_bytes(pickle.dumps(train))
        test = batch(5, "fine_labels")
        (tmp_path / "test").write_bytes(pickle.dumps(test))
        (tmp_path / "meta").write_bytes(pickle.dumps({"fine_label_names": classes}))
        train_y = np.asarray(train["fine_labels"])
    splits = load_dataset(variant, tmp_path)
    assert splits.train.input_shape == (3, 32, 32) and len(splits.train) == 40
    assert splits.train.classes == tuple(classes)
    assert torch.equal(splits.train.targets, torch.from_numpy(train_y.astype(np.int64)))
    # CIFAR rows are channel planes: red 1024 values, then green, then blue
    raw_test = np.asarray(test["data"]).reshape(-1, 3, 32, 32)
    train_x = np.concatenate([np.asarray(p["data"]) for p in (parts if variant == "cifar10" else [train])])
    expected = _expected_standardised(train_x.reshape(-1, 3, 32, 32), raw_test)
    np.testing.assert_allclose(splits.test.inputs.numpy(), expected, atol=1e-5)


def test_image_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    pixels = {}
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                arr = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
                Image.fromarray(arr).save(tmp_path / split / cls / f"{i}.png")
                pixels[(split, cls, i)] = arr
    lazy = load_dataset("imagefolder", tmp_path)  # decoded when read
    splits = lazy.in_memory()  # every image read once into tensors
    assert torch.equal(lazy.test[torch.arange(6)][0], splits.test.inputs)
    assert splits.train.classes == ("cat", "dog") and splits.train.input_shape == (3, 5, 4)
    assert splits.train.targets.tolist() == [0, 0, 0, 1, 1, 1]
    train_x = np.stack([pixels[("train", c, i)] for c in ("cat", "dog") for i in range(3)]).transpose(0, 3, 1, 2)
    test_x = np.stack([pixels[("test", c, i)] for c in ("cat", "dog") for i in range(3)]).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(splits.test.inputs.numpy(), _expected_standardised(train_x, test_x), atol=1e-5)


def test_image_folder_sizes_must_match(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(tmp_path / "a" / "0.png")
    Image.fromarray(np.zeros((5, 4), dtype=np.uint8)).save(tmp_path / "a" / "1.png")
    from coreselect.data import load_image_folder

    with pytest.raises(InvalidInputError, match="differ in size"):
        load_image_folder(tmp_path)


def test_missing_fashion_mnist_names_package_and_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORESELECT_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("fashion-mnist")
    assert "dataset-fashion-mnist" in str(err.value) and "CORESELECT_DATA" in str(err.value)


def test_fashion_mnist_from_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for split, n in (("train", 12), ("t10k", 6)):
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    monkeypatch.setenv("CORESELECT_DATA", str(tmp_path))
    splits = load_dataset("fashion-mnist")
    assert len(splits.train) == 12 and splits.train.classes[0] == "T-shirt/top"


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist() -> None:
    splits = load_dataset("fashion-mnist")
    assert (len(splits.train), len(splits.test), splits.train.num_classes) == (60000, 10000, 10)
    assert splits.train.input_shape == (1, 28, 28)
    assert splits.train.class_counts().tolist() == [6000] * 10
    assert abs(float(splits.train.inputs.mean())) < 1e-4 and abs(float(splits.train.inputs.std()) - 1) < 1e-3


def test_in_memory_rows_are_those_of_plain_indexing() -> None:
    from coreselect.data import InMemoryDataset

    x = torch.randn(50, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 4, (50,), generator=torch.Generator().manual_seed(1))
    data = InMemoryDataset(x, y, 4)
    ways = [torch.tensor([3, 1, 3, 49]), torch.tensor([3, -1, 0]), torch.arange(50) % 7 == 0, slice(2, 9), [4, 5],
            torch.tensor(7), torch.zeros(0, dtype=torch.long), torch.tensor([2, 5], dtype=torch.int32)]
    for indices in ways:  # the index_select path, the negative index it leaves to [], masks, slices, lists
        plain = torch.as_tensor(indices) if isinstance(indices, list) else indices
        inputs, targets = data[indices]
        assert torch.equal(inputs, x[plain]) and torch.equal(targets, y[plain])
    assert torch.equal(torch.cat(list(data.chunks(3, torch.tensor([9, 0, 4, 4, 1])))), x[[9, 0, 4, 4, 1]])
    with pytest.raises(IndexError):
        data[torch.tensor([50])]
