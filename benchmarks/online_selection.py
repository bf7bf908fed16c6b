"""Online batch selection on Fashion-MNIST / LeNet (the Bayesian data-selection paper's protocol):
every online strategy, clean, with 10% symmetric label noise and long-tailed (imbalance 10), over seeds.

Half of the training set is held out for the irreducible-loss / validation model (trained once per
setting and seed, cached); every method, full data included, trains on the other half. n_B = 320,
n_b = 32, budget 0.1 (so an epoch is one pass over the candidate stream), AdamW lr 1e-3, constant
schedule, as in the papers. Prints epochs to the accuracy targets, final accuracy, wall-clock and the
share of noisy labels among the selected.

    .venv/bin/python benchmarks/online_selection.py [--seeds 0 1 2] [--epochs 20] [--targets 0.85 0.88]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from coreselect.experiments import ResultStore, RunConfig, run_experiment
from coreselect.experiments.report import report, time_to_target_table

STRATEGIES = ("full", "uniform", "train-loss", "grad-norm", "grad-norm-is", "irreducible-loss", "rho-loss",
              "bayesian", "svp")
SETTINGS = {"clean": {}, "noise 10%": {"label_noise": 0.1}, "long-tailed 10": {"imbalance": 10.0}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--targets", type=float, nargs="+", default=[0.85, 0.88])
    parser.add_argument("--store", type=Path, default=Path("runs/online.db"))
    args = parser.parse_args()
    store = ResultStore(args.store)
    train = {"epochs": args.epochs, "budget": 0.1, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01,
             "schedule": "constant", "eval_points": 2 * args.epochs}
    for setting in args.settings:
        for seed in args.seeds:
            for strategy in args.strategies:
                config = RunConfig.create(dataset="fashion-mnist", model="lenet", strategy=strategy, seed=seed,
                                          holdout_fraction=0.5, train=train, **SETTINGS[setting])
                run = run_experiment(config, store, progress_bar=False)
                print(f"{setting} seed {seed} {strategy}: {100 * (run.test_accuracy or 0):.2f}%", flush=True)
    runs = store.runs(status="done")
    print(report(store))
    print()
    print(time_to_target_table(store, runs, args.targets))


if __name__ == "__main__":
    main()
