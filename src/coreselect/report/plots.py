"""The report's plots, computed from the results store (matplotlib, drawn off-screen).

Every figure has one panel per setting (dataset, model, epochs, noise, imbalance): methods are only
compared within a setting. Curves show the mean over seeds with a band of ± one standard deviation.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING, Literal

import numpy as np

from coreselect.experiments.config import setting_label
from coreselect.report.tables import MethodSummary
from coreselect.strategies.registry import STRATEGIES

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from coreselect.experiments.store import ResultStore, StoredRun

Axis = Literal["time", "examples"]


def _panels(count: int, *, width: float = 5.2, height: float = 3.6) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    columns = min(count, 2 if width > 6 else 3)
    rows = -(-count // columns)
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for extra in axes[count:]:
        extra.set_visible(False)
    return figure, axes[:count]


def _by_setting(runs: list[StoredRun]) -> dict[str, dict[str, list[StoredRun]]]:
    groups: dict[str, dict[str, list[StoredRun]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        label = run.config.method_label
        if not STRATEGIES[run.config.strategy].full_data:
            label += f" b={run.config.train.budget:g}"
        groups[run.config.setting_key][label].append(run)
    return groups


def learning_curves(store: ResultStore, runs: list[StoredRun], x: Axis,
                    extra_seconds: dict[str, float] | None = None) -> Figure | None:
    """Test accuracy against selection + training seconds (``x="time"``; ``extra_seconds`` per run, e.g. proxy
    runs, shift a curve's start) or against back-propagated examples (``x="examples"``)."""
    from matplotlib import colormaps

    groups = _by_setting(runs)
    if not groups:
        return None
    extra_seconds = extra_seconds or {}
    figure, axes = _panels(len(groups), width=7.0)
    for axis, (setting_key, methods) in zip(axes, sorted(groups.items()), strict=True):
        colours = colormaps["tab20" if len(methods) > 10 else "tab10"]
        for index, (label, rs) in enumerate(sorted(methods.items())):
            histories = [store.evaluations(r.run_id) for r in rs]
            points = min(len(h) for h in histories)
            if points == 0:
                continue
            xs = np.array([[(e.selection_s + e.training_s + extra_seconds.get(r.run_id, 0.0)) if x == "time"
                            else e.examples for e in h[:points]] for r, h in zip(rs, histories, strict=True)])
            ys = 100 * np.array([[e.test_accuracy for e in h[:points]] for h in histories])
            mean_x, mean_y, std_y = xs.mean(0), ys.mean(0), ys.std(0)
            colour = colours(index % colours.N)
            axis.plot(mean_x, mean_y, marker=".", markersize=3, linewidth=1.2, label=label, color=colour)
            axis.fill_between(mean_x, mean_y - std_y, mean_y + std_y, color=colour, alpha=0.15)
        axis.set_title(setting_label(setting_key), fontsize=8)
        axis.set_xlabel("selection + training wall-clock (s)" if x == "time" else "back-propagated examples")
        if x == "time":
            axis.set_xscale("log")
        axis.set_ylabel("test accuracy (%)")
        _clip_low(axis)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return figure


def _clip_low(axis: Axes) -> None:
    """Keep the interesting top of the accuracy axis in view when a diverged run drags the lower limit down."""
    low, high = axis.get_ylim()
    axis.set_ylim(max(low, high - 45), high)


def summary_bars(rows: list[MethodSummary], field: str, xlabel: str, *, percent: bool = False,
                 with_std: str | None = None) -> Figure | None:
    """Horizontal bars of one :class:`MethodSummary` field per method, a panel per setting; methods without a
    value (e.g. the reference's relative error) are left out."""
    groups: dict[str, list[MethodSummary]] = defaultdict(list)
    for row in rows:
        if getattr(row, field) is not None:
            groups[json.dumps(row.setting, sort_keys=True)].append(row)
    if not groups:
        return None
    figure, axes = _panels(len(groups), height=0.5 + 0.28 * max(len(g) for g in groups.values()))
    scale = 100.0 if percent else 1.0
    for axis, (setting_key, members) in zip(axes, sorted(groups.items()), strict=True):
        labels = [m.method if m.method == "full" else f"{m.method} b={m.budget:g}" for m in members]
        values = [scale * getattr(m, field) for m in members]
        errors = [scale * (getattr(m, with_std) or 0.0) for m in members] if with_std else None
        positions = np.arange(len(members))
        axis.barh(positions, values, xerr=errors, color="tab:blue", alpha=0.75, capsize=2)
        axis.set_yticks(positions, labels, fontsize=7)
        axis.invert_yaxis()
        axis.set_title(setting_label(setting_key), fontsize=8)
        axis.set_xlabel(xlabel)
        axis.grid(axis="x", alpha=0.3)
    return figure


def class_balance(store: ResultStore, runs: list[StoredRun]) -> Figure | None:
    """Share of each class among the examples a method selected (all rounds, all seeds), beside the class
    shares of the training set, a panel per setting; methods that store no selections are left out."""
    from matplotlib import colormaps

    shares: dict[str, dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        record = store.record(run.run_id, "class_counts")
        if record is None:  # stored before runs recorded their class counts
            continue
        if STRATEGIES[run.config.strategy].full_data:
            counts, label = np.asarray(record["training"]), "training set"
        elif record["selected"] is not None:
            counts = np.asarray(record["selected"])
            label = f"{run.config.method_label} b={run.config.train.budget:g}"
        else:
            continue
        shares[run.config.setting_key][label].append(counts / max(counts.sum(), 1))
    if not shares:
        return None
    figure, axes = _panels(len(shares), height=0.6 + 0.28 * max(len(m) for m in shares.values()))
    for axis, (setting_key, methods) in zip(axes, sorted(shares.items()), strict=True):
        labels = sorted(methods, key=lambda name: (name != "training set", name))
        mean = np.array([np.mean(methods[name], axis=0) for name in labels])
        left = np.zeros(len(labels))
        colours = [colormaps["tab10"](c % 10) for c in range(mean.shape[1])]
        for c in range(mean.shape[1]):
            axis.barh(np.arange(len(labels)), 100 * mean[:, c], left=left, color=colours[c], label=str(c))
            left += 100 * mean[:, c]
        axis.set_yticks(np.arange(len(labels)), labels, fontsize=7)
        axis.invert_yaxis()
        axis.set_xlim(0, 100)
        axis.set_xlabel("share of the selected examples by class (%)")
        axis.set_title(setting_label(setting_key), fontsize=8)
        axis.legend(fontsize=6, ncols=min(mean.shape[1], 10), loc="upper center", bbox_to_anchor=(0.5, -0.25),
                    title="class", title_fontsize=6)
    return figure


def frontier_plot(rows: list[MethodSummary]) -> Figure | None:
    """Per setting with a frontier: random's wall-clock frontier as a line (± std band, interpolated as the
    verdicts are), its points marked with their budgets, and every other method as a point with ± std error
    bars in seconds and accuracy, in the legend with its family. The accuracy axis spans the frontier and the
    methods within 15 points of its cheapest run; one further below (e.g. diverged seeds) sits at the bottom
    edge, marked ▼."""
    from matplotlib import colormaps
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    from coreselect.report.frontier import FRONTIER_METHODS, frontiers, setting_id

    lines = frontiers(rows)
    if not lines:
        return None
    figure, axes = _panels(len(lines), width=8.0, height=4.6)
    for axis, (key, frontier) in zip(axes, sorted(lines.items()), strict=True):
        points = frontier.points
        log_s = np.log([p.seconds for p in points])
        grid = np.linspace(log_s[0], log_s[-1], 200)
        seconds = np.clip(np.exp(grid), points[0].seconds, points[-1].seconds)  # exp(log t) may round below t
        accuracy = 100 * np.array([frontier.accuracy_at(float(t)) for t in seconds])
        spread = 100 * np.interp(grid, log_s, [p.accuracy_std for p in points])
        axis.plot(seconds, accuracy, color="0.35", linewidth=1.5, zorder=1, label="random's frontier")
        axis.fill_between(seconds, accuracy - spread, accuracy + spread, color="0.6", alpha=0.25, zorder=0)
        for p in [*points, *frontier.dominated]:
            axis.plot(p.seconds, 100 * p.accuracy, "o", color="0.7" if p in frontier.dominated else "0.35",
                      markersize=4)
            axis.annotate("full" if p.budget == 1.0 else f"random {p.budget:g}", (p.seconds, 100 * p.accuracy),
                          textcoords="offset points", xytext=(4, -9), fontsize=6, color="0.35")
        methods = sorted((r for r in rows if setting_id(r.setting) == key and r.method not in FRONTIER_METHODS),
                         key=lambda r: -r.accuracy_mean)
        top = 100 * max([points[-1].accuracy, *(r.accuracy_mean for r in methods)]) + 0.8
        near = [r.accuracy_mean for r in methods if r.accuracy_mean >= points[0].accuracy - 0.15]
        bottom = 100 * min([points[0].accuracy, *near]) - 0.8  # 15 points under random's cheapest run at most
        colours = colormaps["tab20" if len(methods) > 10 else "tab10"]
        for index, row in enumerate(methods):
            mean = 100 * row.accuracy_mean
            off_chart = mean < bottom
            axis.errorbar(row.time_s, bottom + 0.15 if off_chart else mean, xerr=row.time_std,
                          yerr=None if off_chart else 100 * row.accuracy_std, fmt="v" if off_chart else "s",
                          color=colours(index % colours.N), markersize=5, capsize=2, linewidth=0.8, zorder=3,
                          label=f"{row.method} b={row.budget:g} ({row.family})" + (" ▼ below" if off_chart else ""))
        axis.set_ylim(bottom, top)
        axis.set_xscale("log")
        axis.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel("selection + training + proxy seconds")
        axis.set_ylabel("test accuracy (%)")
        axis.set_title(setting_label(json.loads(key)), fontsize=8)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return figure
