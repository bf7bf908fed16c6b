"""Cost of recording loss trajectories on the full-data run (Fashion-MNIST / LeNet), as a ratio.

Trains the same full run (same seed) without a recorder and with one per train-loss source, and prints the
wall-clock of each with the extra share. Goal: at most 15% extra.

    .venv/bin/python benchmarks/trajectory_cost.py [--epochs 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from coreselect.data import load_dataset, prepare_splits
from coreselect.models import create_model
from coreselect.strategies import create_strategy
from coreselect.train import TrainConfig, Trainer
from coreselect.train.trajectory import LossTrajectories

GOAL = 0.15


def wall_clock(splits, epochs: int, source: str | None) -> float:
    torch.manual_seed(0)
    model = create_model("lenet", splits.train.input_shape, splits.train.num_classes)
    with tempfile.TemporaryDirectory() as folder:
        callbacks = [] if source is None else [LossTrajectories(folder, train_losses=source)]
        trainer = Trainer(model, create_strategy("full"), splits.train, splits.test,
                          TrainConfig(epochs=epochs, eval_points=1), val=splits.val, callbacks=callbacks,
                          progress_bar=False)
        start = time.perf_counter()
        trainer.fit()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    splits = prepare_splits(load_dataset("fashion-mnist"), val_fraction=0.1)
    base = wall_clock(splits, args.epochs, None)
    print(f"full run, {args.epochs} epochs, no recorder: {base:.1f} s")
    for source in ("eval", "steps"):
        seconds = wall_clock(splits, args.epochs, source)
        extra = seconds / base - 1
        print(f"recording every epoch, train losses from {source!r}: {seconds:.1f} s, extra {100 * extra:.1f}% "
              f"({'meets' if extra <= GOAL else 'misses'} the {100 * GOAL:.0f}% goal)")


if __name__ == "__main__":
    main()
