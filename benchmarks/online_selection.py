"""Online batch selection on Fashion-MNIST / LeNet (the Bayesian data-selection paper's protocol):
every online strategy, clean, with 10% symmetric label noise and long-tailed (imbalance 10), over seeds.

Half of the training set is held out for the irreducible-loss / validation model (trained once per
setting and seed, cached); every method, full data included, trains on the other half. n_B = 320,
n_b = 32, budget 0.1 (so an epoch is one pass over the candidate stream), AdamW lr 1e-3, constant
schedule, as in the papers. Prints epochs to the accuracy targets, final accuracy, wall-clock, the share of
noisy labels among the selected and the selection overhead per step. The runs are those of the ``online``
preset (``coreselect bench --preset online`` makes the same runs into the same store).

    .venv/bin/python benchmarks/online_selection.py [--seeds 0 1 2] [--targets 0.8 0.85] [--jobs 2]
"""

from __future__ import annotations

import statistics

from tabulate import tabulate

from coreselect.experiments import ResultStore
from coreselect.report.tables import report, setting_label, time_to_target_table
from preset_script import preset_parser, run_preset_from


def main() -> None:
    parser = preset_parser(__doc__.splitlines()[0])
    parser.add_argument("--targets", type=float, nargs="+", help="accuracy targets (default: the preset's)")
    args = parser.parse_args()
    spec, store, _ = run_preset_from(args, "online")
    runs = store.runs(status="done")
    print(report(store))
    print()
    print(time_to_target_table(store, runs, args.targets or spec.targets))
    print()
    print(step_overhead(store, runs))


def step_overhead(store: ResultStore, runs: list) -> str:
    """Per online strategy: seconds of selection (scoring the n_B candidates, sampling) and of training per
    step, and selection's share of the step, mean over seeds."""
    groups: dict[tuple[str, str], list] = {}
    for run in runs:
        if run.steps and run.config.strategy != "full":
            groups.setdefault((setting_label(run.config.setting_key), run.config.method_label), []).append(run)
    rows = []
    for (setting, method), rs in sorted(groups.items()):
        select = statistics.fmean((r.selection_s or 0.0) / r.steps for r in rs)
        train = statistics.fmean((r.training_s or 0.0) / r.steps for r in rs)
        rows.append([setting, method, len(rs), f"{1000 * select:.2f}", f"{1000 * train:.2f}",
                     f"{100 * select / (select + train):.1f}%"])
    return tabulate(rows, headers=["setting", "method", "seeds", "selection ms/step", "training ms/step",
                                   "selection share of step"], tablefmt="github", disable_numparse=True)


if __name__ == "__main__":
    main()
