"""Speed and accuracy of the foundation on Fashion-MNIST / LeNet, measured in one run on this machine.

Goals (2 CPU threads): one epoch over the 60k training images in at most 10 s; full training for 20 epochs
at least 90.5% test accuracy; ``random`` at budget 0.1 at least 87.5%.

    .venv/bin/python benchmarks/lenet_fashion_mnist.py [--threads 2] [--store PATH]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from coreselect.data import load_dataset
from coreselect.experiments import ResultStore, RunConfig, run_experiment
from coreselect.models import create_model
from coreselect.strategies import create_strategy
from coreselect.train import TrainConfig, Trainer

EPOCH_GOAL_S = 10.0
FULL_GOAL, RANDOM_GOAL = 0.905, 0.875


def epoch_seconds() -> float:
    """Wall-clock of one training epoch (selection + training, evaluation excluded) over all 60k images."""
    splits = load_dataset("fashion-mnist")
    torch.manual_seed(0)
    model = create_model("lenet", splits.train.input_shape, splits.train.num_classes)
    config = TrainConfig(epochs=1, budget=1.0, eval_points=1)
    result = Trainer(model, create_strategy("full"), splits.train, splits.test, config, device="cpu",
                     progress_bar=False).fit()
    return result.timings.learning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--store", type=Path, default=None, help="results store (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")

    seconds = epoch_seconds()
    print(f"LeNet epoch over 60k images: {seconds:.2f} s (goal <= {EPOCH_GOAL_S:.0f} s; "
          f"ratio goal/measured {EPOCH_GOAL_S / seconds:.2f})")

    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(args.store or Path(tmp) / "bench.db")
        for strategy, budget, goal in (("full", 1.0, FULL_GOAL), ("random", 0.1, RANDOM_GOAL)):
            config = RunConfig.create(dataset="fashion-mnist", model="lenet", strategy=strategy, seed=0,
                                      train={"epochs": 20, "budget": budget})
            start = time.perf_counter()
            run = run_experiment(config, store, device="cpu", progress_bar=False)
            acc = run.test_accuracy or 0.0
            verdict = "meets" if acc >= goal else "MISSES"
            print(f"{strategy:>6} budget {budget:g}, 20 epochs: test accuracy {100 * acc:.2f}% "
                  f"(goal >= {100 * goal:.1f}%: {verdict}), {time.perf_counter() - start:.1f} s wall-clock, "
                  f"selection {run.selection_s:.2f} s, training {run.training_s:.1f} s")


if __name__ == "__main__":
    main()
