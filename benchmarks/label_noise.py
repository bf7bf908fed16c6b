"""Label-noise benchmark (the stable-coresets paper's claim): Fashion-MNIST / LeNet with symmetric label
noise, budget 0.1, full / random / CRAIG / CREST / stable over several seeds.

Prints the report (test accuracy, relative error, wall-clock, share of noisy labels among the selected)
and, per noise level, the gradient-error curve of the coreset methods over training. Runs go to a results
store, so an interrupted benchmark resumes where it stopped and finished runs are not trained again.

The runs are those of the ``noise`` preset (``coreselect bench --preset noise`` makes the same runs into
the same store); this script adds the weighted noisy share and the gradient-error curves.

    .venv/bin/python benchmarks/label_noise.py [--seeds 0 1 2] [--jobs 2]
"""

from __future__ import annotations

import statistics

import torch

from coreselect.data import load_dataset, prepare_splits
from coreselect.experiments import ResultStore
from coreselect.report.tables import report
from coreselect.train.gradient_error import RELATIVE
from preset_script import preset_parser, run_preset_from


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
    parser = preset_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    _, store, _ = run_preset_from(args, "noise")
    print(report(store))
    print()
    print(weighted_noisy_shares(store))
    print()
    print(gradient_error_curves(store))


if __name__ == "__main__":
    main()
