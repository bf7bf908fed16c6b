"""Label-noise benchmark (the stable-coresets paper's claim): Fashion-MNIST / LeNet with symmetric label
noise, budget 0.1, full / random / CRAIG / CREST / stable over several seeds.

Prints the report (test accuracy, relative error, wall-clock, share of noisy labels among the selected)
and, per noise level, the gradient-error curve of the coreset methods over training. Runs go to a results
store, so an interrupted benchmark resumes where it stopped and finished runs are not trained again.

    .venv/bin/python benchmarks/label_noise.py [--noise 0.4 0 0.2 0.6] [--seeds 0 1 2] [--epochs 10]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from coreselect.data import load_dataset, prepare_splits
from coreselect.experiments import ResultStore, RunConfig, run_experiment
from coreselect.experiments.report import report
from coreselect.train.gradient_error import RELATIVE

STRATEGIES = ("full", "random", "craig", "crest", "stable")
CORESET_METHODS = ("craig", "crest", "stable")


def gradient_error_curves(store: ResultStore, parts: int = 4) -> str:
    """Mean relative gradient error at ``parts`` evenly spaced evaluation points, per noise level and method."""
    curves: dict[tuple[float, str], list[list[float]]] = {}
    for run in store.runs(status="done"):
        values = [e.extras[RELATIVE] for e in store.evaluations(run.run_id) if RELATIVE in e.extras]
        if values:
            picks = [values[max(0, round(len(values) * (i + 1) / parts) - 1)] for i in range(parts)]
            curves.setdefault((run.config.label_noise, run.config.method_label), []).append(picks)
    lines = [f"relative gradient error ‖∇L_V − ∇L_S‖ / ‖∇L_V‖ at {parts} points of training (mean over seeds):"]
    for (noise, method), runs in sorted(curves.items()):
        means = [statistics.fmean(r[i] for r in runs) for i in range(parts)]
        lines.append(f"  noise {noise:g}  {method:10s} " + "  ".join(f"{m:.3f}" for m in means))
    return "\n".join(lines)


def weighted_noisy_shares(store: ResultStore) -> str:
    """Share of the selection weight on corrupted labels (what the weighted gradient sees), per noise level and
    method, mean over rounds and seeds; the corruption is re-derived from each run's seed."""
    masks: dict[tuple, torch.Tensor] = {}
    shares: dict[tuple[float, str], list[float]] = {}
    for run in store.runs(status="done"):
        c = run.config
        if c.label_noise <= 0:
            continue
        key = (c.dataset, c.val_fraction, c.label_noise, c.noise_kind, c.imbalance, c.seed)
        if key not in masks:
            masks[key] = prepare_splits(load_dataset(c.dataset, c.data_root), val_fraction=c.val_fraction,
                                        label_noise=c.label_noise, noise_kind=c.noise_kind,
                                        imbalance_ratio=c.imbalance, seed=c.seed).train.noise_mask.cpu().float()
        rounds = [(masks[key][s["indices"]] * (s["weights"] if s["weights"] is not None else 1.0)).sum()
                  / (s["weights"].sum() if s["weights"] is not None else len(s["indices"]))
                  for s in store.selections(run.run_id)]
        if rounds:
            shares.setdefault((c.label_noise, c.method_label), []).append(float(torch.stack(rounds).mean()))
    lines = ["share of selection weight on corrupted labels (weighted coresets; mean over rounds and seeds):"]
    lines += [f"  noise {noise:g}  {method:32s} {100 * statistics.fmean(v):5.1f}%"
              for (noise, method), v in sorted(shares.items())]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.4, 0.0, 0.2, 0.6])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--budget", type=float, default=0.1)
    parser.add_argument("--gradient-error", type=int, default=2000,
                        help="training examples in the reference gradient of the gradient-error curve (0: off)")
    parser.add_argument("--store", type=Path, default=Path("runs/label_noise.db"))
    args = parser.parse_args()
    store = ResultStore(args.store)
    for noise in args.noise:  # the noise level of the headline claim first
        for seed in args.seeds:
            for strategy in args.strategies:
                config = RunConfig.create(dataset="fashion-mnist", model="lenet", strategy=strategy, seed=seed,
                                          label_noise=noise, noise_kind="symmetric", val_fraction=0.1,
                                          train={"epochs": args.epochs, "budget": args.budget})
                sample = args.gradient_error if strategy in CORESET_METHODS and args.gradient_error else None
                run = run_experiment(config, store, progress_bar=False, gradient_error_sample=sample)
                print(f"noise {noise:g} seed {seed} {strategy}: {100 * (run.test_accuracy or 0):.2f}%", flush=True)
    print(report(store))
    print()
    print(weighted_noisy_shares(store))
    print()
    print(gradient_error_curves(store))


if __name__ == "__main__":
    main()
