"""The report a person reads: ``report.md`` and a self-contained ``report.html`` (plots embedded) beside
the plots as PNG files, all computed from the results store.

Sections: first the answer to "which method should I use here?" (per setting, methods sorted by accuracy with
the verdict against random's wall-clock frontier) and the frontier plot; then the comparison table (accuracy,
relative error against full data, cost, selection share,
speed-up including selection and proxy cost, noisy-label share under noise), selection seconds against the
cost floor of the forwards each method asked for, accuracy against wall-clock
and against back-propagated examples, bars of relative error / speed-up / selection share / noisy share,
class balance of the selections, time to target (when targets are given), each strategy's
instrumentation, the forgetting score of selections, and LTC's aligned / conflicting examples.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, select_autoescape

from coreselect.report import plots
from coreselect.report.tables import (
    MethodSummary,
    answer_tables,
    cost_floor_table,
    forgetting_table,
    format_table,
    instrumentation_table,
    proxy_seconds,
    setting_label,
    summarise_store,
    time_to_target_table,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from coreselect.experiments.store import ResultStore


@dataclass(frozen=True)
class Section:
    """A titled part of the report: a table (github markdown and HTML) or a plot (PNG file name)."""

    title: str
    caption: str
    markdown: str | None = None
    html_table: str | None = None
    image: str | None = None
    image_data: str | None = None  # base64 PNG, embedded in the HTML page
    css_class: str = ""


def _table(title: str, caption: str, make: Callable[[str], str | None]) -> Section | None:
    """A table section from ``make(tablefmt)`` (None when it has nothing to show)."""
    markdown = make("github")
    if markdown is None:
        return None
    return Section(title, caption, markdown=markdown, html_table=make("html"))


def _figure(folder: Path, name: str, title: str, caption: str, figure: Figure | None) -> Section | None:
    if figure is None:
        return None
    path = folder / f"{name}.png"
    figure.savefig(path, dpi=100)
    return Section(title, caption, image=path.name, image_data=base64.b64encode(path.read_bytes()).decode())


def build_sections(store: ResultStore, folder: Path, *, targets: Sequence[float] = (),
                   relative: bool = False) -> list[Section]:
    """Every section the store has data for; plots are written into ``folder``."""
    from coreselect.report.alignment import store_alignment_figure

    runs = store.runs(status="done")
    proxies = proxy_seconds(store, runs)
    rows: list[MethodSummary] = summarise_store(store, runs)
    answers = answer_tables(rows, "github")
    sections: list[Section | None] = [
        Section("Which method here?" + ("" if len(answers) == 1 else f" — {setting_label(a.setting)}"), a.caption,
                markdown=a.table, html_table=h.table, css_class="answer")
        for a, h in zip(answers, answer_tables(rows, "html"), strict=True)
    ]
    sections += [
        _figure(folder, "frontier", "Against random's wall-clock frontier",
                "Random at several budgets and full data (grey line, ± std band; interpolated in log-seconds) against "
                "every other method (mean ± std over seeds in seconds and accuracy; family in the legend). A point "
                "above the line beat random given the same seconds; ▼ marks a method below the chart.",
                plots.frontier_plot(rows)),
        _table("Comparison", "Test accuracy (mean ± std over seeds), relative error against full data, cost in "
               "seconds (selection + training, plus proxy runs), share of the cost spent selecting, speed-up "
               "against full data.", lambda fmt: format_table(rows, fmt)),
        _table("Cost floor", "Selection seconds against the seconds of the no-grad forwards each method asked "
               "for (forwarded examples × one forward per example, timed by each run on its own model and data, the "
               "median of its probes before training and at each evaluation): "
               "the overhead beyond the forwards. A row without forwards (random) shows what the training loop "
               "itself spends handing out batches, which every method's selection seconds include.",
               lambda fmt: cost_floor_table(rows, fmt)),
        _figure(folder, "accuracy_vs_time", "Accuracy against wall-clock",
                "Test accuracy at each evaluation against the cumulative selection + training seconds (proxy runs "
                "counted from the start), mean over seeds with a ± std band.",
                plots.learning_curves(store, runs, "time", proxies)),
        _figure(folder, "accuracy_vs_examples", "Accuracy against back-propagated examples",
                "Test accuracy against the number of examples back-propagated so far: the budget the trainer holds "
                "equal across methods.", plots.learning_curves(store, runs, "examples")),
        _figure(folder, "relative_error", "Relative error against full data",
                "(full − method) / full accuracy, per seed against the mean full run; bars: mean, whiskers: std.",
                plots.summary_bars(rows, "relative_error_mean", "relative error (%)",
                                   with_std="relative_error_std")),
        _figure(folder, "speedup", "Speed-up including selection cost",
                "Full data's cost over the method's (selection + training + proxy seconds).",
                plots.summary_bars(rows, "speedup", "speed-up (×)")),
        _figure(folder, "selection_share", "Selection time share",
                "Share of each method's cost spent selecting (proxy runs included).",
                plots.summary_bars(rows, "selection_share", "selection share of cost (%)", percent=True)),
        _figure(folder, "noisy_share", "Noisy labels among the selected",
                "Share of corrupted labels among the selected examples, under label noise (the noise rate is what "
                "random selection gets).", plots.summary_bars(rows, "noisy_share", "noisy share (%)", percent=True)),
        _figure(folder, "class_balance", "Class balance of the selections",
                "Share of each class among all examples a method selected, against the training set's.",
                plots.class_balance(store, runs)),
    ]
    if targets:
        sections.append(_table(
            "Time to target", "Epochs (passes over the data stream) and selection + training seconds until test "
            "accuracy first reached each target; mean over the seeds that reached it, with how many did.",
            lambda fmt: time_to_target_table(store, runs, list(targets), relative=relative, tablefmt=fmt)))
    sections += [
        _table("Strategy instrumentation", "Each strategy's own counters at the end of training, mean over seeds "
               "(*_s in seconds).", lambda fmt: instrumentation_table(store, runs, fmt)),
        _table("Hardness of the selections", "Mean forgetting score of the selected examples (from the full run of "
               "the same seed) by part of training.", lambda fmt: forgetting_table(store, runs, tablefmt=fmt)),
    ]
    alignment = store_alignment_figure(store, folder / "ltc_alignment.png")
    if alignment is not None:
        sections.append(Section("What LTC scores show", "For one validation example per class: the training "
                                "examples whose loss trajectories move most with its (green) and most against it "
                                "(red), and their loss curves.", image=alignment.name,
                                image_data=base64.b64encode(alignment.read_bytes()).decode()))
    return [s for s in sections if s is not None]


def write_report(store: ResultStore, folder: str | Path, *, targets: Sequence[float] = (),
                 relative: bool = False) -> list[Path]:
    """Write ``report.md``, ``report.html`` and the plots into ``folder``; returns the two report files."""
    import matplotlib

    matplotlib.use("Agg")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sections = build_sections(store, folder, targets=targets, relative=relative)
    title = f"coreselect report — {store.path.name}"
    markdown = [f"# {title}", ""]
    for section in sections:
        markdown += [f"## {section.title}", "", section.caption, ""]
        markdown += [section.markdown, ""] if section.markdown else [f"![{section.title}]({section.image})", ""]
    if not store.runs(status="done"):
        markdown.append(f"No finished runs in {store.path}.")
    (folder / "report.md").write_text("\n".join(markdown))
    environment = Environment(loader=PackageLoader("coreselect.report", "templates"),
                              autoescape=select_autoescape(["html"]))
    page = environment.get_template("report.html.j2").render(title=title, store=html.escape(str(store.path)),
                                                              sections=sections)
    (folder / "report.html").write_text(page)
    return [folder / "report.md", folder / "report.html"]
