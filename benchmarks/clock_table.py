"""The README's `clock` tables from a results store: per grid (settings that differ only in label noise), one row
per method and budget, clean and noisy side by side: accuracy (mean ± std over seeds, collapsed seeds counted),
seconds, points over random's frontier at those seconds, share of the seconds spent selecting and, under noise, the
share of mislabelled examples among those trained on. Reads the store only.

    .venv/bin/python benchmarks/clock_table.py [--store runs/clock.db]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from clock_goals import strategy_of
from coreselect.experiments.config import setting_label
from coreselect.experiments.store import ResultStore
from coreselect.report.frontier import FRONTIER_METHODS, Frontier, frontiers, setting_id
from coreselect.report.tables import REFERENCE, MethodSummary, accuracy_cell, summarise_store


def cell(row: MethodSummary, frontier: Frontier | None) -> str:
    """One setting's cell of a method: what the README's `clock` tables show."""
    parts = [accuracy_cell(row), f"{row.time_s:.1f} s"]
    selects = strategy_of(row) not in FRONTIER_METHODS
    if row.method in FRONTIER_METHODS:
        parts.append("frontier")
    elif frontier is not None:
        verdict = frontier.verdict(row.time_s, row.accuracy_mean)
        parts.append(verdict.note.split(";")[0] if verdict.gain is None else
                     f"{100 * verdict.gain:+.2f}".replace("-", "−"))
    extras = [f"{100 * row.selection_share:.1f} % selecting"] if selects else []
    if row.noisy_share is not None and row.method not in FRONTIER_METHODS:
        extras.append(f"{100 * row.noisy_share:.1f} % noisy picked")
    return " · ".join(parts) + (", " + ", ".join(extras) if extras else "")


SUPERSCRIPTS = "¹²³⁴⁵⁶⁷⁸⁹"
LONG_PARAMS = 50  # characters of settings above which a method's settings go to a footnote


def label(method: str, footnotes: list[str]) -> str:
    """A method's name with its settings in code spans (``infobatch (`budgeted=True`)``); settings longer than
    ``LONG_PARAMS`` characters become a numbered footnote, appended to ``footnotes``."""
    name, _, params = method.partition("(")
    settings = [f"`{p}`" for p in params.rstrip(")").split(",") if p]
    if not settings:
        return name
    if len(params) <= LONG_PARAMS:
        return f"{name} ({', '.join(settings)})"
    if ", ".join(settings) not in footnotes:
        footnotes.append(", ".join(settings))
    return f"{name}{SUPERSCRIPTS[footnotes.index(', '.join(settings)) % len(SUPERSCRIPTS)]}"


def tables(rows: list[MethodSummary]) -> str:
    lines_of = frontiers(rows)
    grids: dict[str, dict[tuple[str, float], dict[float, MethodSummary]]] = defaultdict(lambda: defaultdict(dict))
    noises: dict[str, set[float]] = defaultdict(set)
    for row in rows:
        noise = row.setting.get("label_noise", 0.0)
        grid = json.dumps({**row.setting, "label_noise": 0.0}, sort_keys=True)
        grids[grid][(row.method, row.budget)][noise] = row
        noises[grid].add(noise)
    out = []
    for grid, methods in grids.items():
        levels = sorted(noises[grid])
        out.append(f"{setting_label(grid)}, clean and with label noise\n")
        out.append("| method | budget | " + " | ".join("clean" if n == 0 else f"{100 * n:g} % noise" for n in levels)
                   + " |")
        out.append("|---|---|" + "---|" * len(levels))
        order = sorted(methods, key=lambda k: (k[0] not in FRONTIER_METHODS, k[0] == REFERENCE, k[0], k[1]))
        footnotes: list[str] = []
        for method, budget in order:
            cells = []
            for noise in levels:
                row = methods[(method, budget)].get(noise)
                cells.append("—" if row is None else cell(row, lines_of.get(setting_id(row.setting))))
            out.append(f"| {label(method, footnotes)} | {budget:g} | " + " | ".join(cells) + " |")
        out += ["", *(f"{SUPERSCRIPTS[i]} {note}" for i, note in enumerate(footnotes))]
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="runs/clock.db", help="results store (default: runs/clock.db)")
    print(tables(summarise_store(ResultStore.for_reading(parser.parse_args().store))))


if __name__ == "__main__":
    main()
