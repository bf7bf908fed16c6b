"""Fuzz: randomly damaged .npz files, image folders, results stores and checkpoints. Every command ends
with exit code 0 or 2 and no traceback, and no run is stored as done with a result that differs from the
same run on undamaged files."""

from __future__ import annotations

import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from coreselect.experiments import ResultStore
from probe_cases import _image_folder, train_args, write_npz
from test_cli import cli
from test_trainer import _Interrupt, _trainer

ROUNDS = 3


def _damage(path: Path, rng: random.Random) -> str:
    """One random kind of damage to the file at ``path``: flipped bytes, zeros over a span, a cut, garbage."""
    data = bytearray(path.read_bytes())
    kind = rng.choice(["flip", "zeros", "cut", "garbage"])
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif kind == "zeros":
        start = rng.randrange(len(data))
        stop = min(len(data), start + rng.randint(1, 512))
        data[start:stop] = bytes(stop - start)
    elif kind == "cut":
        data = data[: rng.randrange(len(data))]
    else:
        data = bytearray(rng.randbytes(rng.randint(0, len(data))))
    path.write_bytes(bytes(data))
    return kind


def _check(done: subprocess.CompletedProcess, store: Path, reference: float | None, what: str) -> None:
    assert done.returncode in (0, 2), f"{what}: exit {done.returncode}\n{done.stderr}"
    assert "Traceback" not in done.stderr, f"{what}\n{done.stderr}"
    if done.returncode == 0 and reference is not None:
        runs = ResultStore(store).runs(status="done")
        assert [r.test_accuracy for r in runs] == [reference], f"{what}: a damaged input trained to another result"


def _reference(make: Callable[[Path], list[str]], folder: Path) -> float:
    args = make(folder)
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    (run,) = ResultStore(args[args.index("--store") + 1]).runs(status="done")
    return run.test_accuracy  # type: ignore[return-value]


def test_damaged_npz_files(tmp_path: Path) -> None:
    reference = _reference(lambda f: train_args(write_npz(f / "data"), f / "runs.db"), tmp_path / "ref")
    rng = random.Random(0)
    for round_ in range(ROUNDS):
        folder = tmp_path / str(round_)
        root = write_npz(folder / "data")
        kind = _damage(root / rng.choice(["train.npz", "test.npz"]), rng)
        _check(cli(*train_args(root, folder / "runs.db")), folder / "runs.db", reference, f"npz {kind}")


def test_damaged_image_folders(tmp_path: Path) -> None:
    reference = _reference(lambda f: _image_folder(f, None), tmp_path / "ref")
    rng = random.Random(1)
    for round_ in range(ROUNDS):
        folder = tmp_path / str(round_)
        args = _image_folder(folder, None)
        images = sorted((folder / "images").rglob("*.png"))
        kind = _damage(rng.choice(images), rng)
        _check(cli(*args), folder / "runs.db", reference, f"image {kind}")


def test_damaged_stores(tmp_path: Path) -> None:
    reference = _reference(lambda f: train_args(write_npz(f / "data"), f / "runs.db"), tmp_path / "ref")
    rng = random.Random(2)
    for round_ in range(ROUNDS):
        folder = tmp_path / str(round_)
        args = train_args(write_npz(folder / "data"), folder / "runs.db")
        ResultStore(folder / "runs.db")  # closed: its journal is folded into the file
        kind = _damage(folder / "runs.db", rng)
        _check(cli(*args), folder / "runs.db", reference, f"store {kind}")
        _check(cli("report", "--store", str(folder / "runs.db")), folder / "runs.db", None, f"report {kind}")


@pytest.mark.parametrize("seed", range(4))
def test_damaged_checkpoints_resume_to_the_uninterrupted_result(tmp_path: Path, seed: int) -> None:
    expected = _trainer("random").fit()
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        _trainer("random", checkpoint=checkpoint, callbacks=[_Interrupt(2)]).fit()
    rng = random.Random(seed)
    for path in [checkpoint, checkpoint.with_name("run.pt.prev")][: rng.randint(1, 2)]:
        _damage(path, rng)
    resumed = _trainer("random", checkpoint=checkpoint).fit()
    assert [r.test_accuracy for r in resumed.history] == [r.test_accuracy for r in expected.history]
