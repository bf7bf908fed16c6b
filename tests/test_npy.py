"""``.npy`` data read on demand: rows and statistics equal numpy's on the whole array, runs train, bad files get
one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_blobs
from coreselect.data import load_dataset
from coreselect.data.npy import NpyRows
from coreselect.errors import CoreselectError
from coreselect.experiments import ResultStore, RunConfig, run_experiment


def _write(folder: Path, dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    x, y = make_blobs(300, seed=2)
    x = (x * 40 + 100).clip(0, 255).astype(dtype) if dtype == np.uint8 else x.astype(dtype)
    np.save(folder / "train_x.npy", x[:240])
    np.save(folder / "train_y.npy", y[:240])
    np.save(folder / "test_x.npy", x[240:])
    np.save(folder / "test_y.npy", y[240:])
    (folder / "classes.txt").write_text("a b c d\n")
    return x, y


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_rows_are_the_arrays_standardised_with_the_training_statistics(tmp_path: Path, dtype: type) -> None:
    x, y = _write(tmp_path, dtype)
    splits = load_dataset("npy", str(tmp_path))
    scaled = x.astype(np.float64) / (255.0 if dtype == np.uint8 else 1.0)
    train = scaled[:240]
    mean, std = train.mean(axis=(0, 2, 3), keepdims=True), train.std(axis=(0, 2, 3), ddof=1, keepdims=True)
    expected = torch.from_numpy(((scaled - mean) / std).astype(np.float32))
    rows = torch.tensor([5, 0, 239, 17])
    got, labels = splits.train[rows]
    assert torch.allclose(got, expected[rows], atol=1e-5) and torch.equal(labels, torch.from_numpy(y[rows.numpy()]))
    got, _ = splits.test[torch.arange(60)]
    assert torch.allclose(got, expected[240:], atol=1e-5)
    assert splits.train.classes == ("a", "b", "c", "d") and len(splits.train) == 240


def test_a_small_block_pass_gives_the_same_statistics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path)
    whole = NpyRows(tmp_path / "train_x.npy", tmp_path / "train_y.npy").statistics()
    monkeypatch.setattr("coreselect.data.npy.BLOCK_BYTES", 7 * 64 * 4)  # 7 rows a block: 35 blocks, one partial
    blocks = NpyRows(tmp_path / "train_x.npy", tmp_path / "train_y.npy").statistics()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(whole, blocks, strict=True))


@pytest.mark.parametrize("name", ["crest", "rho-loss", "infobatch"])
def test_runs_train_on_npy_data_with_workers(tmp_path: Path, name: str) -> None:
    _write(tmp_path)
    config = RunConfig.create(dataset="npy", data_root=str(tmp_path), model="mlp", strategy=name, workers=2,
                              holdout_fraction=0.3, train={"epochs": 3, "budget": 0.5, "batch_size": 16,
                                                           "eval_points": 1, "optimizer": "adamw", "lr": 1e-3})
    run = run_experiment(config, ResultStore(tmp_path / "runs.db"), progress_bar=False)
    assert run.status == "done" and run.examples == round(0.5 * 3 * 168)
    assert run.test_accuracy is not None and run.test_accuracy > 0.5  # 4 separable classes


@pytest.mark.parametrize(("damage", "message"), [
    ("text", "is not a .npy file"), ("labels", "300 inputs but"), ("fortran", "C order"),
    ("float-labels", "integer array"), ("missing", "not found")])
def test_bad_npy_files_get_one_line_errors(tmp_path: Path, damage: str, message: str) -> None:
    x, y = make_blobs(300, seed=2)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    if damage == "text":
        (tmp_path / "x.npy").write_text("not an array")
    elif damage == "labels":
        np.save(tmp_path / "y.npy", y[:10])
    elif damage == "fortran":
        np.save(tmp_path / "x.npy", np.asfortranarray(x[:, 0]))
    elif damage == "float-labels":
        np.save(tmp_path / "y.npy", y.astype(np.float32))
    else:
        (tmp_path / "y.npy").unlink()
    with pytest.raises(CoreselectError, match=message) as caught:
        NpyRows(tmp_path / "x.npy", tmp_path / "y.npy")
    assert "\n" not in str(caught.value)
