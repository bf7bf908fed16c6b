"""Static coresets on Fashion-MNIST / LeNet: the coreset-size sweep and the transfer table (LTC's claims).

Sweep: coreset sizes (budget = coreset share, trained for the full number of epochs on it) for LTC,
random-subset, forgetting, EL2N and GraNd over seeds. Transfer: coresets for an MLP target scored by an
MLP proxy (same architecture) against ones scored by the LeNet proxy (transferred). Proxy runs are made
once per seed and cached beside the store; finished runs are read back.

    .venv/bin/python benchmarks/static_coresets.py [--sizes 0.01 0.05 0.1 0.3] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from tabulate import tabulate

from coreselect.experiments import ResultStore, RunConfig, run_experiment

METHODS = ("ltc", "random-subset", "forgetting", "el2n", "grand")


def run(store: ResultStore, seed: int, strategy: str, budget: float, model: str, epochs: int,
        params: dict | None = None) -> float:
    config = RunConfig.create(dataset="fashion-mnist", model=model, strategy=strategy, seed=seed, val_fraction=0.1,
                              params=params or {}, train={"epochs": epochs, "budget": budget})
    result = run_experiment(config, store, progress_bar=False)
    print(f"{model} {config.method_label} size {budget:g} seed {seed}: {100 * (result.test_accuracy or 0):.2f}%",
          flush=True)
    return 100 * (result.test_accuracy or 0.0)


def table(results: dict[tuple, list[float]], rows: list, columns: list, row_name: str) -> str:
    body = []
    for r in rows:
        cells = []
        for c in columns:
            accs = results.get((r, c), [])
            cells.append(f"{statistics.fmean(accs):.2f} ± {statistics.stdev(accs) if len(accs) > 1 else 0:.2f}"
                         if accs else "—")
        body.append([r, *cells])
    return tabulate(body, headers=[row_name, *map(str, columns)], tablefmt="github", disable_numparse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.01, 0.05, 0.1, 0.3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--transfer-size", type=float, default=0.1)
    parser.add_argument("--store", type=Path, default=Path("runs/static.db"))
    args = parser.parse_args()
    store = ResultStore(args.store)
    sweep: dict[tuple, list[float]] = defaultdict(list)
    transfer: dict[tuple, list[float]] = defaultdict(list)
    for seed in args.seeds:
        for size in args.sizes:
            for method in args.methods:
                sweep[(method, size)].append(run(store, seed, method, size, "lenet", args.epochs))
        transfer[("random-subset", "same (mlp)")].append(run(store, seed, "random-subset", args.transfer_size,
                                                             "mlp", args.epochs))
        for method in [m for m in args.methods if m != "random-subset"]:
            for proxy in ("mlp", "lenet"):
                acc = run(store, seed, method, args.transfer_size, "mlp", args.epochs, {"proxy_model": proxy})
                transfer[(method, "same (mlp)" if proxy == "mlp" else "transferred (lenet)")].append(acc)
    print("\nTest accuracy (%) of LeNet trained on the coreset, by coreset size (mean ± std over seeds):")
    print(table(sweep, args.methods, args.sizes, "method"))
    print(f"\nMLP target at size {args.transfer_size:g}: coreset scored by an MLP proxy against a LeNet proxy:")
    print(table(transfer, args.methods, ["same (mlp)", "transferred (lenet)"], "method"))


if __name__ == "__main__":
    main()
