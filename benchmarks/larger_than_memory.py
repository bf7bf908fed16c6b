"""Data larger than memory: writes an ``.npy`` dataset of at least ``--gib`` GiB (float32 images with a class
signal, 10 classes), then trains one budgeted epoch of each strategy on it (``--dataset npy``, LeNet), each in
its own process, and prints that process's peak resident memory (Linux VmHWM: data reading, selection and
training all happen in it, ``workers = 0``) against the goal (< 1.5 GiB), with the run's seconds and accuracy.

    .venv/bin/python benchmarks/larger_than_memory.py [--gib 4] [--strategies crest rho-loss] [--budget 0.1]
        [--folder /tmp/coreselect-large] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHAPE = (1, 64, 64)  # 16 KiB a float32 row
CLASSES = 10
GOAL_GIB = 1.5

CHILD = """
import json, sys, time
from coreselect.experiments import ResultStore, RunConfig, run_experiment
folder, strategy, budget = sys.argv[1], sys.argv[2], float(sys.argv[3])
holdout = 0.5 if strategy in ("rho-loss", "irreducible-loss") else 0.0
config = RunConfig.create(dataset="npy", data_root=folder, model="lenet", strategy=strategy, workers=0,
                          holdout_fraction=holdout, train={"epochs": 1, "budget": budget, "eval_points": 1})
start = time.perf_counter()
run = run_experiment(config, ResultStore(f"{folder}/runs-{strategy}.db"), progress_bar=False, rerun=True)
seconds = time.perf_counter() - start
peak = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"peak": peak, "seconds": seconds, "accuracy": run.test_accuracy}))
"""


def write_dataset(folder: Path, gib: float, seed: int = 0) -> int:
    """Train and test ``.npy`` files, the training inputs at least ``gib`` GiB; returns the training rows."""
    row_bytes = int(np.prod(SHAPE)) * 4
    rows = int(np.ceil(gib * (1 << 30) / row_bytes))
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", rows), ("test", 10_000)):
        x = np.lib.format.open_memmap(folder / f"{split}_x.npy", mode="w+", dtype=np.float32, shape=(n, *SHAPE))
        y = rng.integers(0, CLASSES, n)
        band = SHAPE[1] // CLASSES
        for start in range(0, n, 16_384):
            stop = min(n, start + 16_384)
            block = rng.normal(0.0, 1.0, (stop - start, *SHAPE)).astype(np.float32)
            for c in range(CLASSES):  # class c brightens its own band of rows, under heavy noise
                block[y[start:stop] == c, :, c * band:(c + 1) * band, :] += 0.35
            x[start:stop] = block
        x.flush()
        del x
        np.save(folder / f"{split}_y.npy", y)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=4.0)
    parser.add_argument("--strategies", nargs="+", default=["crest", "rho-loss"])
    parser.add_argument("--budget", type=float, default=0.1)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/coreselect-large"))
    parser.add_argument("--keep", action="store_true", help="keep the dataset (and reuse it when it is there)")
    args = parser.parse_args()
    train_file = args.folder / "train_x.npy"
    if not (args.keep and train_file.is_file() and train_file.stat().st_size >= args.gib * (1 << 30)):
        start = time.perf_counter()
        rows = write_dataset(args.folder, args.gib)
        print(f"wrote {rows} training rows of {SHAPE} float32 in {time.perf_counter() - start:.0f} s")
    size = train_file.stat().st_size / (1 << 30)
    (args.folder / "classes.txt").write_text(" ".join(str(c) for c in range(CLASSES)))
    print(f"training inputs on disk: {size:.2f} GiB")
    print(f"{'strategy':<10} {'peak RSS GiB':>12} {'÷ goal':>7} {'seconds':>8} {'accuracy':>8}")
    try:
        for name in args.strategies:
            out = subprocess.run([sys.executable, "-c", CHILD, str(args.folder), name, str(args.budget)],
                                 check=True, capture_output=True, text=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            peak = result["peak"] / (1 << 30)
            print(f"{name:<10} {peak:12.2f} {peak / GOAL_GIB:7.2f} {result['seconds']:8.0f} "
                  f"{100 * result['accuracy']:7.2f}%", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(args.folder, ignore_errors=True)


if __name__ == "__main__":
    main()
