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

import statistics
from collections import defaultdict

from tabulate import tabulate

from preset_script import preset_parser, run_preset_from


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
    parser = preset_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    _, _, outcomes = run_preset_from(args, "sizes")
    sweep: dict[tuple, list[float]] = defaultdict(list)
    transfer: dict[tuple, list[float]] = defaultdict(list)
    for o in outcomes:
        if o.test_accuracy is None:
            continue
        c, accuracy = o.run.config, 100 * o.test_accuracy
        if c.model == "lenet":  # rows by method and settings (a rule or a proxy's losses is a row of its own)
            sweep[(c.method_label, c.train.budget)].append(accuracy)
        elif c.params.get("proxy_model") == "lenet":
            transfer[(c.strategy, "transferred (lenet)")].append(accuracy)
        else:
            transfer[(c.strategy, "same (mlp)")].append(accuracy)
    methods = list(dict.fromkeys(c for c, _ in sweep))
    transferred = list(dict.fromkeys(c for c, _ in transfer))
    sizes = sorted({b for _, b in sweep})
    print("\nTest accuracy (%) of LeNet trained on the coreset, by coreset size (mean ± std over seeds):")
    print(table(sweep, methods, sizes, "method"))
    print("\nMLP target: coreset scored by an MLP proxy against a LeNet proxy:")
    print(table(transfer, transferred, ["same (mlp)", "transferred (lenet)"], "method"))


if __name__ == "__main__":
    main()
