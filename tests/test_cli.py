"""The command line: its shape, one-line errors without tracebacks, and resuming a killed run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import make_blobs
from coreselect.experiments import ResultStore


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coreselect", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def _train_args(root: Path, store: Path, *extra: str) -> list[str]:
    return ["train", "--dataset", "npz", "--data-root", str(root), "--model", "cnn", "--store", str(store),
            "--epochs", "2", "--batch-size", "32", "--no-progress", *extra]


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_methods_lists_strategies_models_and_datasets() -> None:
    result = cli("methods")
    assert result.returncode == 0
    for name in ("full", "random", "random-subset", "lenet", "resnet18", "fashion-mnist", "cifar10"):
        assert name in result.stdout


def test_train_report_and_rerun(npz_root: Path, tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    first = cli(*_train_args(npz_root, store, "--strategy", "full", "--budget", "0.5"))
    assert first.returncode == 0, first.stderr
    assert "budget set to 1" in first.stderr and "test accuracy" in first.stdout
    assert cli(*_train_args(npz_root, store, "--strategy", "random", "--budget", "0.5")).returncode == 0
    again = cli(*_train_args(npz_root, store, "--strategy", "random", "--budget", "0.5"))
    assert "already in the store" in again.stdout
    report = cli("report", "--store", str(store), "--out", str(tmp_path / "report"))
    assert report.returncode == 0
    assert "full" in report.stdout and "random" in report.stdout and "rel. error" in report.stdout
    written = (tmp_path / "report" / "report.md").read_text()
    assert "rel. error" in written and "LTC" not in written  # no ltc run, no alignment figure


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("--model", "vgg"), ("unknown model 'vgg'", "lenet", "resnet18")),
        (("--strategy", "craig-typo"), ("unknown strategy", "random-subset")),
        (("--budget", "1.5"), ("budget", "(0, 1]", "1.5")),
        (("--budget", "0"), ("budget", "(0, 1]")),
        (("--model", "mlp", "--param", "select_every=2"), ("bad parameters for strategy 'random'", "select_every")),
        (("--model", "mlp", "--lr", "1e30", "--schedule", "constant"), ("loss became", "lower the learning rate")),
    ],
)
def test_bad_input_gives_one_line(npz_root: Path, tmp_path: Path, args: tuple[str, ...], needles) -> None:
    base = _train_args(npz_root, tmp_path / "runs.db")
    base = [a for i, a in enumerate(base) if not (a == "--model" or (i > 0 and base[i - 1] == "--model"))]
    assert_one_line_error(cli(*base, *args), *needles)


def test_unknown_dataset_and_missing_files(tmp_path: Path) -> None:
    assert_one_line_error(cli("train", "--dataset", "imagenet", "--store", str(tmp_path / "r.db")),
                          "unknown dataset", "fashion-mnist", "npz")
    missing = cli("train", "--dataset", "fashion-mnist", "--store", str(tmp_path / "r.db"),
                  env={"CORESELECT_DATA": str(tmp_path)})
    assert_one_line_error(missing, "apt-get install dataset-fashion-mnist", "CORESELECT_DATA")
    assert_one_line_error(cli("report", "--store", str(tmp_path / "none.db")), "no results store")


def test_labels_out_of_range_and_wrong_input_shape(tmp_path: Path) -> None:
    x, y = make_blobs(60)
    y[3] = -2
    classes = np.array(["a", "b", "c", "d"])
    np.savez(tmp_path / "train.npz", x=x, y=y, classes=classes)
    np.savez(tmp_path / "test.npz", x=x[:10], y=np.abs(y[:10]))
    assert_one_line_error(cli(*_train_args(tmp_path, tmp_path / "r.db")), "train labels -2 lie outside the 4 classes")
    np.savez(tmp_path / "train.npz", x=x.reshape(60, -1), y=np.abs(y), classes=classes)
    np.savez(tmp_path / "test.npz", x=x[:10].reshape(10, -1), y=np.abs(y[:10]))
    assert_one_line_error(cli(*_train_args(tmp_path, tmp_path / "r.db")), "cnn takes images", "--model mlp")


def test_killed_run_resumes_to_the_same_accuracy(tmp_path: Path) -> None:
    x, y = make_blobs(3000, side=12, seed=5)
    np.savez(tmp_path / "train.npz", x=x[:2500], y=y[:2500], classes=np.array(["a", "b", "c", "d"]))
    np.savez(tmp_path / "test.npz", x=x[2500:], y=y[2500:])
    args = ["--epochs", "12", "--eval-points", "24", "--strategy", "random", "--budget", "0.5", "--seed", "3"]
    reference = cli(*_train_args(tmp_path, tmp_path / "straight.db", *args))
    assert reference.returncode == 0, reference.stderr

    store = tmp_path / "killed.db"
    command = [sys.executable, "-m", "coreselect", *_train_args(tmp_path, store, *args)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    checkpoints = Path(f"{store}.checkpoints")
    deadline = time.monotonic() + 120
    while not any(checkpoints.glob("*.pt")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    assert process.poll() is None, "the run finished before it could be killed; make it longer"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert ResultStore(store).runs()[0].status == "running"

    resumed = cli(*_train_args(tmp_path, store, *args))
    assert resumed.returncode == 0, resumed.stderr
    (straight,), (after_kill,) = ResultStore(tmp_path / "straight.db").runs(), ResultStore(store).runs()
    assert after_kill.status == "done" and after_kill.test_accuracy == straight.test_accuracy
    assert after_kill.steps == straight.steps and after_kill.examples == straight.examples
    assert not any(checkpoints.glob("*.pt"))  # removed once the run is stored
