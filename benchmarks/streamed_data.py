"""Wall-clock of the DataLoader path against in-memory tensors: the same runs (Fashion-MNIST / LeNet, same seed)
with the data held as tensors, read on demand in the main process (``--workers 0``), and read by DataLoader
workers; prints each run's seconds and its ratio to the in-memory run (goal: ≤ 1.3× with 2 workers). The runs
are checked to be the same run (accuracy and steps equal).

    .venv/bin/python benchmarks/streamed_data.py [--strategies random crest rho-loss] [--workers 0 2]
        [--budget 0.1] [--epochs 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from coreselect.experiments import ResultStore, RunConfig, run_experiment


def timed(config: RunConfig, folder: Path) -> tuple[float, float, int]:
    """(seconds of the whole run, test accuracy, steps), in a fresh store."""
    store = ResultStore(folder / f"{config.strategy}-{config.workers}.db")
    start = time.perf_counter()
    run = run_experiment(config, store, progress_bar=False)
    assert run.test_accuracy is not None and run.steps is not None
    return time.perf_counter() - start, run.test_accuracy, run.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", nargs="+", default=["random", "crest", "rho-loss"])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--budget", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    print(f"{'strategy':<10} {'data':<12} {'seconds':>8} {'ratio':>6}  accuracy  steps")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.strategies:
            holdout = 0.5 if name == "rho-loss" else 0.0
            base = None
            for workers in [None, *args.workers]:
                config = RunConfig.create(strategy=name, workers=workers, holdout_fraction=holdout, val_fraction=0.1,
                                          train={"epochs": args.epochs, "budget": args.budget})
                seconds, accuracy, steps = timed(config, Path(folder))
                base = base or (seconds, accuracy, steps)
                same = "" if (accuracy, steps) == base[1:] else "  DIFFERENT RUN"
                label = "in memory" if workers is None else f"{workers} workers"
                print(f"{name:<10} {label:<12} {seconds:8.1f} {seconds / base[0]:6.2f}  {100 * accuracy:7.2f}  "
                      f"{steps:5d}{same}", flush=True)


if __name__ == "__main__":
    main()
