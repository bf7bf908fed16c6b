"""CREST's validity check: the official whole-training-set forward against ours (the random subsets only).

Both checks are timed on the same region of the same run (Fashion-MNIST, LeNet after one epoch, default
CREST settings, budget 0.1) and compute the same loss; the script prints the seconds per check and the
ratio.

    .venv/bin/python benchmarks/crest_check.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from coreselect.data import load_dataset, prepare_splits
from coreselect.models import create_model
from coreselect.strategies import Budget, Context, create_strategy
from coreselect.train import TrainConfig, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    splits = prepare_splits(load_dataset("fashion-mnist"), val_fraction=0.1)
    torch.manual_seed(0)
    model = create_model("lenet", splits.train.input_shape, splits.train.num_classes)
    Trainer(model, create_strategy("full"), splits.train, splits.test, TrainConfig(epochs=1, eval_points=1),
            progress_bar=False).fit()
    ctx = Context(model=model, train=splits.train, budget=Budget(0.1, 20, len(splits.train), 128))
    timings = {}
    forwarded = {}
    for full_set in (True, False):
        strategy = create_strategy("crest", full_set_check=full_set)
        strategy.setup(ctx)
        next(strategy.batches())  # the first region
        seconds = []
        for _ in range(args.repeats):
            before = strategy.seconds["check"]
            strategy._model_failed()
            seconds.append(strategy.seconds["check"] - before)
        timings[full_set] = statistics.median(seconds)
        forwarded[full_set] = len(strategy.subsets)
    n = len(splits.train)
    print(f"forwarded per check: official {n} examples, ours {forwarded[False]} (the region's random subsets)")
    print(f"seconds per check (median of {args.repeats}): official {timings[True]:.4f}, ours {timings[False]:.4f}")
    print(f"ratio official / ours: {timings[True] / timings[False]:.1f}×")


if __name__ == "__main__":
    main()
