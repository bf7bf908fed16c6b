"""The loss-trajectory alignment figure (the LTC paper's Figures 1–2) of a run, from the record the run stored:
for a few validation examples, the training examples whose loss moves most with theirs (green) and most against
(red), with their loss curves."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from coreselect.experiments.alignment import ALIGNMENT

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from coreselect.experiments.store import ResultStore


def _image(inputs: Tensor) -> Tensor:
    """An example as an image matplotlib can show: [H, W] grey or [H, W, 3] colour, scaled to [0, 1]."""
    x = inputs.float()
    if x.ndim == 3:
        x = x[0] if x.shape[0] == 1 else x.permute(1, 2, 0)
    elif x.ndim == 1:  # flat features: shown as a square when they are one
        side = int(len(x) ** 0.5)
        x = x[: side * side].reshape(side, side)
    return (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)


def plot_alignment(record: dict[str, Any]) -> Figure:
    """One row per validation example: its image, its aligned then conflicting training examples (correlation
    above each), and the loss curves of all of them, labelled by class name."""
    from matplotlib.figure import Figure

    m, two_k = record["correlation"].shape
    k = two_k // 2
    figure = Figure(figsize=(1.2 * (2 * k + 1) + 3.5, 1.35 * m), layout="constrained")
    grid = figure.add_gridspec(m, 2 * k + 2, width_ratios=[1.0] * (2 * k + 1) + [3.0])
    for row in range(m):
        colours = ["tab:green"] * k + ["tab:red"] * k
        panels = [(record["val_inputs"][row], "validation", "black")]
        panels += [(record["train_inputs"][row, j], f"{float(record['correlation'][row, j]):+.2f}", colours[j])
                   for j in range(2 * k)]
        for col, (image, title, colour) in enumerate(panels):
            axis = figure.add_subplot(grid[row, col])
            axis.imshow(_image(image).numpy(), cmap="gray")
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_title(title, fontsize=7, color=colour, pad=2)
            for spine in axis.spines.values():
                spine.set_color(colour)
        curves = figure.add_subplot(grid[row, -1])
        for j in range(2 * k):
            curves.plot(record["train_curves"][:, row, j].numpy(), color=colours[j], alpha=0.5, linewidth=0.8)
        curves.plot(record["val_curves"][:, row].numpy(), color="black", linewidth=1.6)
        curves.set_yscale("log")
        curves.tick_params(labelsize=6)
        curves.set_ylabel(f"loss ({record['names'][row]})", fontsize=7)
        if row == m - 1:
            curves.set_xlabel("recording point (epoch)", fontsize=7)
    figure.suptitle("Loss trajectories: validation example (black), most aligned training examples (green) "
                    "and most conflicting (red)", fontsize=9)
    return figure


def store_alignment_figure(store: ResultStore, path: str | Path) -> Path | None:
    """Write the alignment figure of the first finished run in ``store`` that recorded one to ``path``; None
    when no run did."""
    for run in store.runs(status="done"):
        record = store.record(run.run_id, ALIGNMENT)
        if record is None:
            continue
        figure = plot_alignment(record)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110)
        return path
    return None
