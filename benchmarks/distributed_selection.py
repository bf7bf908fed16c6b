"""Selection wall-clock with 1 and 2 data-parallel processes on CPU (gloo), side by side.

Each strategy trains the same configuration (Fashion-MNIST / LeNet, validation 10 %, holdout 50 %, budget
10 % of 3 epochs, AdamW 1e-3) three times through the command line, each time into a fresh store: one process with one
thread, one process with two threads (the same cores as the 2-process job, in the usual way), and
``coreselect train --nproc 2`` (torchrun, one thread per process). It prints rank 0's selection seconds,
the training seconds and the final accuracy of each, and the selection speed-up of two processes over one.

    .venv/bin/python benchmarks/distributed_selection.py [--strategies craig crest ...] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tabulate import tabulate

from coreselect.experiments import ResultStore

DEFAULT = ["craig", "gradmatch", "glister", "crest", "stable", "train-loss", "rho-loss", "bayesian"]
LAYOUTS = {"1 process, 1 thread": (1, 1), "1 process, 2 threads": (1, 2), "2 processes, 1 thread each": (2, 1)}


def run(strategy: str, nproc: int, threads: int, folder: Path, epochs: int,
        budget: float) -> tuple[float, float, float]:
    """(selection seconds, training seconds, test accuracy) of one fresh run."""
    store = folder / f"{strategy}-{nproc}x{threads}.db"
    command = [sys.executable, "-m", "coreselect", "train", "--strategy", strategy, "--model", "lenet",
               "--epochs", str(epochs), "--budget", str(budget), "--val-fraction", "0.1", "--holdout", "0.5",
               "--eval-points", "1", "--optimizer", "adamw", "--lr", "0.001", "--store", str(store),
               "--no-progress", "--device", "cpu",
               "--nproc", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    (stored,) = ResultStore(store).runs()
    return stored.selection_s or 0.0, stored.training_s or 0.0, stored.test_accuracy or 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", nargs="+", default=DEFAULT)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--budget", type=float, default=0.1)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in args.strategies:
            measured = {name: run(strategy, nproc, threads, Path(tmp), args.epochs, args.budget)
                        for name, (nproc, threads) in LAYOUTS.items()}
            one, two_threads, two = (measured[name] for name in LAYOUTS)
            rows.append([strategy, *(f"{m[0]:.1f}" for m in (one, two_threads, two)),
                         f"{one[0] / two[0]:.2f}×", f"{two_threads[0] / two[0]:.2f}×",
                         *(f"{m[1]:.1f}" for m in (one, two_threads, two)),
                         *(f"{100 * m[2]:.2f}" for m in (one, two_threads, two))])
            print(f"{strategy}: selection {one[0]:.1f} s (1×1) / {two_threads[0]:.1f} s (1×2) / {two[0]:.1f} s (2×1)",
                  flush=True)
    headers = ["strategy", "sel 1×1 (s)", "sel 1×2 (s)", "sel 2×1 (s)", "2×1 vs 1×1", "2×1 vs 1×2",
               "train 1×1 (s)", "train 1×2 (s)", "train 2×1 (s)", "acc 1×1", "acc 1×2", "acc 2×1"]
    print(tabulate(rows, headers=headers, tablefmt="github"))


if __name__ == "__main__":
    main()
