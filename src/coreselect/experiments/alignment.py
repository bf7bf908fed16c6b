"""What loss-trajectory correlation looks like: for a few validation examples, the training examples whose
loss moves most with theirs ("aligned", most positive correlation) and most against ("conflicting", most
negative), with their loss curves — the picture of the LTC paper's Figures 1–2, drawn from a stored run.

:func:`aligned_examples` picks the examples (pure tensor code); :func:`plot_alignment` draws them;
:func:`store_alignment_figure` finds the loss trajectories an ``ltc`` run of a results store scored with
and writes the figure as a PNG.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from coreselect.errors import InvalidInputError
from coreselect.signals import pairwise_trajectory_correlation

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from coreselect.experiments.store import ResultStore


@dataclass(frozen=True)
class Alignment:
    """Chosen validation examples and, for each, its ``k`` most aligned and most conflicting training examples."""

    val_indices: Tensor  # [m]
    positive: Tensor  # [m, k] training indices, most positive correlation first
    negative: Tensor  # [m, k] training indices, most negative correlation first
    positive_correlation: Tensor  # [m, k]
    negative_correlation: Tensor  # [m, k]


def aligned_examples(train_losses: Tensor, val_losses: Tensor, val_targets: Tensor, *, per_class: int = 1,
                     k: int = 5, differences: bool = True, seed: int = 0) -> Alignment:
    """``per_class`` random validation examples of every class and their extreme training examples.

    Correlations are Pearson correlations of the loss trajectories ([points, examples], first differences
    when ``differences``), taken against the whole training pool, whatever its class.
    """
    if per_class < 1 or k < 1:
        raise InvalidInputError(f"per_class and k must be positive, got {per_class} and {k}")
    if k > train_losses.shape[1]:
        raise InvalidInputError(f"k={k} exceeds the {train_losses.shape[1]} training examples")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(val_targets), generator=generator)
    chosen = [order[val_targets[order] == c][:per_class] for c in torch.unique(val_targets).tolist()]
    val_indices = torch.cat(chosen)
    corr = pairwise_trajectory_correlation(train_losses, val_losses[:, val_indices], differences=differences)
    top = corr.topk(k, dim=1)
    bottom = corr.topk(k, dim=1, largest=False)
    return Alignment(val_indices, top.indices, bottom.indices, top.values, bottom.values)


def _image(inputs: Tensor) -> Tensor:
    """An example as an image matplotlib can show: [H, W] grey or [H, W, 3] colour, scaled to [0, 1]."""
    x = inputs.float()
    if x.ndim == 3:
        x = x[0] if x.shape[0] == 1 else x.permute(1, 2, 0)
    elif x.ndim == 1:  # flat features: shown as a square when they are one
        side = int(len(x) ** 0.5)
        x = x[: side * side].reshape(side, side)
    return (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)


def plot_alignment(alignment: Alignment, train_inputs: Tensor, val_inputs: Tensor, train_losses: Tensor,
                   val_losses: Tensor, row_labels: list[str] | None = None) -> Figure:
    """One row per validation example: its image, its aligned then conflicting training examples (correlation
    above each), and the loss curves of all of them; ``row_labels`` (e.g. class names) label the rows."""
    from matplotlib.figure import Figure

    m, k = alignment.positive.shape
    figure = Figure(figsize=(1.2 * (2 * k + 1) + 3.5, 1.35 * m), layout="constrained")
    grid = figure.add_gridspec(m, 2 * k + 2, width_ratios=[1.0] * (2 * k + 1) + [3.0])
    for row, val_index in enumerate(alignment.val_indices.tolist()):
        panels = [(val_inputs[val_index], "validation", "black")]
        panels += [(train_inputs[i], f"{c:+.2f}", "tab:green")
                   for i, c in zip(alignment.positive[row].tolist(), alignment.positive_correlation[row].tolist(),
                                   strict=True)]
        panels += [(train_inputs[i], f"{c:+.2f}", "tab:red")
                   for i, c in zip(alignment.negative[row].tolist(), alignment.negative_correlation[row].tolist(),
                                   strict=True)]
        for col, (image, title, colour) in enumerate(panels):
            axis = figure.add_subplot(grid[row, col])
            axis.imshow(_image(image).numpy(), cmap="gray")
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_title(title, fontsize=7, color=colour, pad=2)
            for spine in axis.spines.values():
                spine.set_color(colour)
        curves = figure.add_subplot(grid[row, -1])
        for i in alignment.positive[row].tolist():
            curves.plot(train_losses[:, i].numpy(), color="tab:green", alpha=0.5, linewidth=0.8)
        for i in alignment.negative[row].tolist():
            curves.plot(train_losses[:, i].numpy(), color="tab:red", alpha=0.5, linewidth=0.8)
        curves.plot(val_losses[:, val_index].numpy(), color="black", linewidth=1.6)
        curves.set_yscale("log")
        curves.tick_params(labelsize=6)
        curves.set_ylabel(f"loss ({row_labels[row]})" if row_labels else "loss", fontsize=7)
        if row == m - 1:
            curves.set_xlabel("recording point (epoch)", fontsize=7)
    figure.suptitle("Loss trajectories: validation example (black), most aligned training examples (green) "
                    "and most conflicting (red)", fontsize=9)
    return figure


def store_alignment_figure(store: ResultStore, path: str | Path, *, per_class: int = 1, k: int = 5) -> Path | None:
    """Write the alignment figure of the first finished ``ltc`` run in ``store`` to ``path``; None when the
    store holds no such run or its proxy's trajectories are gone."""
    from coreselect.experiments.runner import load_splits, proxy_folder, proxy_request
    from coreselect.train.trajectory import TrajectoryStore

    for run in store.runs(status="done"):
        if run.config.strategy != "ltc":
            continue
        request = proxy_request(run.config)
        assert request is not None
        folder = proxy_folder(store, run.config, request) / "trajectories"
        if not (folder / "meta.json").is_file():
            continue
        trajectories = TrajectoryStore.open(folder)
        splits = load_splits(run.config)
        assert splits.val is not None  # ltc runs need a validation split
        train_losses, val_losses = torch.from_numpy(trajectories.train), torch.from_numpy(trajectories.val)
        alignment = aligned_examples(train_losses, val_losses, splits.val.targets.cpu(), per_class=per_class, k=k,
                                     differences=run.config.params.get("differences", True), seed=run.config.seed)
        labels = [int(splits.val.targets[i]) for i in alignment.val_indices.tolist()]
        names = [splits.val.classes[c] if splits.val.classes else f"class {c}" for c in labels]
        figure = plot_alignment(alignment, splits.train.inputs.cpu(), splits.val.inputs.cpu(), train_losses,
                                val_losses, names)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110)
        return path
    return None
