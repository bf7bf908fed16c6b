"""Bad inputs and faults a new user meets, each with the outcome it must have.

Each case prepares files in a folder and returns the ``coreselect`` arguments to run there, the exit code
expected (2: a one-line error naming the problem and the fix; 0: handled, possibly with a warning) and the
words the message must hold. ``tests/test_bad_input.py`` runs each as a user would (a process of its own, as many at
a time as there are cores) and checks its outcome; ``benchmarks/bad_input_probe.py`` runs them with a time limit
and counts clear errors, handled cases, tracebacks, silent wrong results and hangs.
"""

from __future__ import annotations

import io
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from conftest import make_blobs


@dataclass(frozen=True)
class Case:
    name: str
    prepare: Callable[[Path], list[str]]
    exit_code: int = 2
    needles: tuple[str, ...] = ()
    as_nobody: bool = False  # run as an unprivileged user (permission cases; root may write anything)
    check: Callable[[Path], str | None] | None = field(default=None)  # after the run: None, or what is wrong


CLASSES = np.array(["a", "b", "c", "d"])


def write_npz(root: Path, n: int = 240, side: int = 8, **changes: np.ndarray) -> Path:
    """A small 4-class image dataset as ``root/train.npz`` and ``root/test.npz``; ``changes`` replace arrays
    (``x``, ``y``, ``classes``, ``test_x``, ``test_y``; an array of None drops it)."""
    x, y = make_blobs(n + 80, side=side, seed=3)
    arrays = {"x": x[:n], "y": y[:n], "classes": CLASSES, "test_x": x[n:], "test_y": y[n:]}
    arrays.update(changes)
    root.mkdir(parents=True, exist_ok=True)
    train = {k: arrays[k] for k in ("x", "y", "classes") if arrays[k] is not None}
    np.savez(root / "train.npz", **train)
    np.savez(root / "test.npz", x=arrays["test_x"], y=arrays["test_y"])
    return root


def train_args(root: Path, store: Path, *extra: str, model: str = "mlp", dataset: str = "npz") -> list[str]:
    return ["train", "--dataset", dataset, "--data-root", str(root), "--model", model, "--store", str(store),
            "--epochs", "2", "--batch-size", "32", "--no-progress", *extra]


def _npz_case(**changes: object) -> Callable[[Path], list[str]]:
    def prepare(tmp: Path) -> list[str]:
        write_npz(tmp / "data", **changes)  # type: ignore[arg-type]
        return train_args(tmp / "data", tmp / "runs.db")

    return prepare


def _npz_case_model(model: str, **changes: object) -> Callable[[Path], list[str]]:
    def prepare(tmp: Path) -> list[str]:
        write_npz(tmp / "data", **changes)  # type: ignore[arg-type]
        return train_args(tmp / "data", tmp / "runs.db", model=model)

    return prepare


def _flag_case(*extra: str, model: str = "mlp") -> Callable[[Path], list[str]]:
    def prepare(tmp: Path) -> list[str]:
        write_npz(tmp / "data")
        return train_args(tmp / "data", tmp / "runs.db", *extra, model=model)

    return prepare


def _object_npz(tmp: Path) -> list[str]:
    write_npz(tmp / "data")
    x = np.empty(240, dtype=object)
    x[:] = [np.zeros(3)] * 240
    np.savez(tmp / "data" / "train.npz", x=x, y=np.zeros(240, dtype=np.int64), classes=CLASSES)
    return train_args(tmp / "data", tmp / "runs.db")


def _garbage_npz(tmp: Path) -> list[str]:
    write_npz(tmp / "data")
    (tmp / "data" / "train.npz").write_bytes(b"PK\x03\x04 not really a zip file" * 10)
    return train_args(tmp / "data", tmp / "runs.db")


def _image_folder(tmp: Path, bad: bytes | None, sizes: tuple[int, int] = (8, 8)) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            folder = tmp / "images" / split / c
            folder.mkdir(parents=True)
            for i in range(6):
                size = sizes if i == 0 else (8, 8)
                Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(folder / f"{i}.png")
    if bad is not None:
        (tmp / "images" / "train" / "cat" / "bad.png").write_bytes(bad)
    return train_args(tmp / "images", tmp / "runs.db", dataset="imagefolder")


def _truncated_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()[:40]


def _store_file(content: bytes) -> Callable[[Path], list[str]]:
    def prepare(tmp: Path) -> list[str]:
        write_npz(tmp / "data")
        (tmp / "runs.db").write_bytes(content)
        return train_args(tmp / "data", tmp / "runs.db")

    return prepare


def _store_is_folder(tmp: Path) -> list[str]:
    write_npz(tmp / "data")
    (tmp / "runs.db").mkdir()
    return train_args(tmp / "data", tmp / "runs.db")


def _read_only(folder_too: bool, command: str) -> Callable[[Path], list[str]]:
    def prepare(tmp: Path) -> list[str]:
        from coreselect.experiments import ResultStore

        write_npz(tmp / "data")
        (tmp / "store").mkdir()
        ResultStore(tmp / "store" / "runs.db")
        with sqlite3.connect(tmp / "store" / "runs.db") as db:  # fold the journal into the file
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for p in (tmp / "store").iterdir():
            p.chmod(0o444)
        (tmp / "store").chmod(0o555 if folder_too else 0o777)
        os.chmod(tmp, 0o777)
        for p in (tmp / "data").iterdir():
            p.chmod(0o644)
        (tmp / "data").chmod(0o755)
        if command == "report":
            return ["report", "--store", str(tmp / "store" / "runs.db")]
        return train_args(tmp / "data", tmp / "store" / "runs.db")

    return prepare


def _bench_config(text: str) -> Callable[[Path], list[str]]:
    def prepare(tmp: Path) -> list[str]:
        write_npz(tmp / "data")
        (tmp / "grid.toml").write_text(text.replace("ROOT", str(tmp / "data")))
        return ["bench", "--config", str(tmp / "grid.toml"), "--store", str(tmp / "runs.db")]

    return prepare


CASES: list[Case] = [
    # the results store
    Case("store is not SQLite", _store_file(b"hello, world\n" * 100), needles=("not a coreselect results store",)),
    Case("store is an empty file", _store_file(b""), exit_code=0),
    Case("store is a folder", _store_is_folder, needles=("is a folder",)),
    Case("store file read-only", _read_only(False, "train"), needles=("read-only",), as_nobody=True),
    Case("store folder read-only", _read_only(True, "train"), needles=("--store",), as_nobody=True),
    Case("report on a read-only store", _read_only(True, "report"), exit_code=0, as_nobody=True),
    Case("report on a missing store", lambda t: ["report", "--store", str(t / "none.db")],
         needles=("no results store",)),
    # data files
    Case("npz x of strings", _npz_case(x=np.array(["img"] * 240)), needles=("must be numeric",)),
    Case("npz x of objects", _object_npz, needles=("numeric",)),
    Case("npz not a zip", _garbage_npz, needles=("not a readable .npz",)),
    Case("npz without y", _npz_case(y=None), needles=("lacks array(s) ['y']",)),
    Case("npz float labels", _npz_case(y=np.zeros(240)), needles=("integer array",)),
    Case("npz empty train", _npz_case(x=np.zeros((0, 8, 8), np.float32), y=np.zeros(0, np.int64)),
         needles=("train split holds no examples",)),
    Case("npz empty test", _npz_case(test_x=np.zeros((0, 8, 8), np.float32), test_y=np.zeros(0, np.int64)),
         needles=("test split holds no examples",)),
    Case("npz without classes", _npz_case(classes=None), needles=("--num-classes",)),
    Case("train label 10 of 4 classes", _npz_case(y=np.r_[np.arange(239) % 4, 10]),
         needles=("train labels 10 lie outside",)),
    Case("test label 255 only", _npz_case(test_y=np.r_[np.arange(79) % 4, 255]),
         needles=("test labels 255 lie outside",)),
    Case("class without training images", _npz_case(y=np.arange(240) % 3), exit_code=0,
         needles=("have no training examples",)),
    Case("train and test shapes differ", _npz_case(test_x=np.zeros((80, 6, 6), np.float32)), needles=("differ",)),
    Case("missing data root", lambda t: train_args(t / "nowhere", t / "runs.db"), needles=("--data-root",)),
    Case("image folder with a non-image .png", lambda t: _image_folder(t, b"this is text"),
         needles=("not a readable image",)),
    Case("image folder with a truncated .png", lambda t: _image_folder(t, _truncated_png()),
         needles=("not a readable image",)),
    Case("image folder of mixed sizes", lambda t: _image_folder(t, None, sizes=(9, 8)), needles=("differ in size",)),
    Case("lenet on 8x8 images", _flag_case(model="lenet"), needles=("do not fit lenet",)),
    Case("resnet on tabular inputs", _npz_case_model("resnet20", x=np.zeros((240, 5), np.float32),
                                                    test_x=np.zeros((80, 5), np.float32)),
         needles=("resnet takes images", "--model mlp")),
    Case("nan inputs", _npz_case(x=np.full((240, 8, 8), np.nan, np.float32)), needles=("non-finite",)),
    # options
    Case("unknown strategy", _flag_case("--strategy", "randon"), needles=("valid names", "random")),
    Case("unknown model", _flag_case(model="lenet5"), needles=("valid names",)),
    Case("unknown dataset", lambda t: train_args(t, t / "runs.db", dataset="mnist-ish"), needles=("valid names",)),
    Case("budget above 1", _flag_case("--budget", "1.5"), needles=("budget",)),
    Case("budget zero", _flag_case("--budget", "0"), needles=("budget",)),
    Case("budget under one batch", _flag_case("--budget", "1e-9"), exit_code=0, needles=("under one batch",)),
    Case("epochs zero", _flag_case("--epochs", "0"), needles=("epochs",)),
    Case("negative lr", _flag_case("--lr", "-1"), needles=("lr",)),
    Case("huge lr", _flag_case("--lr", "1e12"), needles=("lower the learning rate",)),
    Case("unknown schedule", _flag_case("--schedule", "warm"), needles=("schedule",)),
    Case("param without =", _flag_case("--strategy", "crest", "--param", "tau"), needles=("KEY=VALUE",)),
    Case("unknown param", _flag_case("--strategy", "crest", "--param", "taus=0.1"), needles=("taus",)),
    Case("bool for a count", _flag_case("--strategy", "crest", "--param", "select_every=true"),
         needles=("select_every",)),
    Case("infinite threshold", _flag_case("--strategy", "crest", "--param", "check_thresh=Infinity"),
         needles=("check_thresh",)),
    Case("num-classes zero", _flag_case("--num-classes", "0"), needles=("num_classes",)),
    Case("num-classes against declared", _flag_case("--num-classes", "7"), needles=("declares 4 classes",)),
    Case("threads zero", _flag_case("--threads", "0"), needles=("threads",)),
    Case("nproc above the cores", _flag_case("--nproc", "100"), needles=("--nproc 100",)),
    Case("nproc zero", _flag_case("--nproc", "0"), needles=("--nproc",)),
    Case("label noise above 1", _flag_case("--label-noise", "1.5"), needles=("label_noise",)),
    Case("unknown device", _flag_case("--device", "tpu"), needles=("device",)),
    # benchmark files and reports
    Case("bench file missing", lambda t: ["bench", "--config", str(t / "none.toml")], needles=("none.toml",)),
    Case("bench file with an unknown key", _bench_config(
        'store = "x.db"\n[[grids]]\ndatasets = ["npz"]\ndata_root = "ROOT"\nstrategies = ["random"]\nbudgetz = [1]\n'),
        needles=("budgetz",)),
    Case("bench file not TOML", _bench_config("[[grids]\nstrategies = "), needles=("grid.toml",)),
    Case("bench with no benchmark named", lambda t: ["bench"], needles=("--preset",)),
    Case("report target above 1", lambda t: (_store_file(b"")(t), ["report", "--store", str(t / "runs.db"),
                                                                  "--target", "1.5"])[1], needles=("targets",)),
]
