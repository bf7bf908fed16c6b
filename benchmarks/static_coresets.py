"""Static coresets on Fashion-MNIST / LeNet: the coreset-size sweep and the transfer table (LTC's claims).

Sweep: coreset sizes (budget = coreset share, trained for the full number of epochs on it) for LTC,
random-subset, forgetting, EL2N and GraNd over seeds. Transfer: coresets for an MLP target scored by an
MLP proxy (same architecture) against ones scored by the LeNet proxy (transferred). Proxy runs are made
once per seed and cached beside the store; finished runs are read back.

The runs are those of the ``sizes`` preset (``coreselect bench --preset sizes`` makes the same runs into the
same store); this script prints them as the two tables.

    .venv/bin/python benchmarks/static_coresets.py [--seeds 0 1 2] [--jobs 2]
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from tabulate import tabulate

from coreselect.experiments.grid import run_preset


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
    parser.add_argument("--seeds", type=int, nargs="+", help="only these seeds (default: the preset's)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    parser.add_argument("--store", type=Path, default=None, help="results store (default: the preset's)")
    args = parser.parse_args()
    _, _, outcomes = run_preset("sizes", seeds=args.seeds, jobs=args.jobs, store=args.store)
    sweep: dict[tuple, list[float]] = defaultdict(list)
    transfer: dict[tuple, list[float]] = defaultdict(list)
    for o in outcomes:
        if o.test_accuracy is None:
            continue
        c, accuracy = o.run.config, 100 * o.test_accuracy
        if c.model == "lenet":
            sweep[(c.strategy, c.train.budget)].append(accuracy)
        elif c.params.get("proxy_model") == "lenet":
            transfer[(c.strategy, "transferred (lenet)")].append(accuracy)
        else:
            transfer[(c.strategy, "same (mlp)")].append(accuracy)
    methods = list(dict.fromkeys(c for c, _ in sweep))
    sizes = sorted({b for _, b in sweep})
    print("\nTest accuracy (%) of LeNet trained on the coreset, by coreset size (mean ± std over seeds):")
    print(table(sweep, methods, sizes, "method"))
    print("\nMLP target: coreset scored by an MLP proxy against a LeNet proxy:")
    print(table(transfer, methods, ["same (mlp)", "transferred (lenet)"], "method"))


if __name__ == "__main__":
    main()
