"""Selection that pays for itself: runs the `clock` preset (or reads any store) and prints each goal's measured
ratio against random's wall-clock frontier and full data, per setting.

Goals: a method within 0.3 points of full data's accuracy at ≤ 0.3× its seconds (lossless at a third of the
cost); at budgets 0.1 and 0.3 an adaptive and an online method above random's frontier at equal seconds by
≥ 0.5 points (≥ 2 under label noise); CREST and stable coresets selecting ≤ 25 % of their seconds, their relative
error at most 0.3 points above their official forms' (where the store holds those at the same budget); online
selection seconds ≤ 1.3× their forward floor (the part of it that the loop spends handing out batches, random's
selection seconds at the same budget, shown apart). A gain over the frontier is given ± one standard error (the seeds'
spread of the method's accuracy and of the frontier's; likewise a gap to full data); the verdict reads the mean.

    .venv/bin/python benchmarks/clock_goals.py [--seeds 0] [--jobs 1] [--store runs/clock.db] [--report-only]
"""

from __future__ import annotations

import math
from collections import defaultdict

from coreselect.experiments.store import ResultStore
from coreselect.report.frontier import FRONTIER_METHODS, Frontier, frontiers, setting_id
from coreselect.report.tables import MethodSummary, gain_cell, setting_label, summarise_store
from preset_script import preset_parser, run_preset_from

LOSSLESS_POINTS, LOSSLESS_COST = 0.003, 0.3
MARGIN_CLEAN, MARGIN_NOISY = 0.005, 0.02
SELECTION_SHARE, RELATIVE_ERROR_SLACK, FLOOR_RATIO = 0.25, 0.3, 1.3


def strategy_of(row: MethodSummary) -> str:
    """The strategy's name in a method label (``crest(check_thresh=0.15)`` → ``crest``)."""
    return row.method.split("(")[0]


def lossless(full: MethodSummary, methods: list[MethodSummary]) -> list[str]:
    """Per budget, the most accurate method that meets the goal (within ``LOSSLESS_POINTS`` of full data at
    ≤ ``LOSSLESS_COST``× its seconds), else the most accurate one, with by how much it misses."""
    out = []
    for budget in sorted({r.budget for r in methods}):
        ranked = sorted((r for r in methods if r.budget == budget), key=lambda r: -r.accuracy_mean)
        best = next((r for r in ranked if full.accuracy_mean - r.accuracy_mean <= LOSSLESS_POINTS
                     and r.time_s <= LOSSLESS_COST * full.time_s), ranked[0])
        gap, cost = 100 * (full.accuracy_mean - best.accuracy_mean), best.time_s / full.time_s
        misses = ([f"{gap - 100 * LOSSLESS_POINTS:.2f} points too far"] if gap > 100 * LOSSLESS_POINTS else []) + \
            ([f"{cost - LOSSLESS_COST:.3f}× too slow"] if cost > LOSSLESS_COST else [])
        verdict = "; ".join(misses) or "met"
        side, gap_se = "under" if gap >= 0 else "above", 100 * math.hypot(full.accuracy_se, best.accuracy_se)
        out.append(f"lossless, b={budget:g}: best {best.method} {abs(gap):.2f} ± {gap_se:.2f} points {side} full at "
                   f"{cost:.3f}× its {full.time_s:.1f} s ({verdict})")
    return out


def overhead(row: MethodSummary, members: list[MethodSummary]) -> str:
    """A cheaper CREST / stable form's share of seconds selecting, and its relative error against full data
    beside the official form's at the same budget when the store holds it (the goal: ≤ ``SELECTION_SHARE`` of
    the seconds, relative error at most ``RELATIVE_ERROR_SLACK`` points above the official form's)."""
    official = next((r for r in members if r.method == strategy_of(row) and r.budget == row.budget), None)
    misses = [] if row.selection_share <= SELECTION_SHARE else ["selects too much"]
    against = ""
    if official is None or official.relative_error_mean is None or row.relative_error_mean is None:
        misses.append("relative error unchecked: no official form at this budget")
    else:
        excess = row.relative_error_mean - official.relative_error_mean
        against = (f", relative error {row.relative_error_mean:.2f} % against the official form's "
                   f"{official.relative_error_mean:.2f} % ({excess:+.2f} points; official selects "
                   f"{100 * official.selection_share:.1f} %)")
        if excess > RELATIVE_ERROR_SLACK:
            misses.append(f"relative error {excess - RELATIVE_ERROR_SLACK:.2f} points too high")
    verdict = "; ".join(misses) or "met"
    return (f"overhead: {row.method} b={row.budget:g} selects {100 * row.selection_share:.1f} % of its seconds, "
            f"accuracy {100 * row.accuracy_mean:.2f} %{against} ({verdict})")


def against_frontier(frontier: Frontier, seconds: float, row: MethodSummary) -> str:
    """Points over the frontier of ``row``'s accuracy at ``seconds`` (or that it ran faster than random's cheapest
    run)."""
    verdict = frontier.verdict(seconds, row.accuracy_mean, row.accuracy_se)
    return "faster than random's cheapest run" if verdict.gain is None else f"{gain_cell(verdict)} points"


def online_costs(row: MethodSummary, frontier: Frontier) -> str:
    """Where an online run's seconds go (holdout model, scoring, training) and where it would sit against the
    frontier were the holdout model free, and were the scoring free too: what limits it."""
    def against(seconds: float) -> str:
        return against_frontier(frontier, seconds, row)

    training = row.time_s - row.selection_s
    return (f"costs: {row.method} b={row.budget:g} {row.time_s:.1f} s = holdout model {row.proxy_s:.1f} + "
            f"scoring {row.selection_s - row.proxy_s:.1f} + training {training:.1f}; against the frontier "
            f"{against(row.time_s)}, without the holdout model {against(row.time_s - row.proxy_s)}, without "
            f"any selection cost {against(training)}")


def loop_part(row: MethodSummary, members: list[MethodSummary]) -> str:
    """The part of an online run's selection-to-floor ratio that the training loop spends handing out batches,
    which every strategy pays and no forward floor holds: random's selection seconds at the same budget and
    setting (it forwards nothing), when the store holds it."""
    loop = next((r for r in members if r.method == "random" and r.budget == row.budget), None)
    if loop is None or not row.forward_floor_s:
        return ""
    share = loop.selection_s / row.forward_floor_s
    return (f"; the loop's own part (random's {loop.selection_s:.2f} s at b={row.budget:g}) is {share:.2f}× of it, "
            f"the rest {(row.selection_s - row.proxy_s) / row.forward_floor_s - share:.2f}×")


def goals(rows: list[MethodSummary]) -> list[str]:
    """One line per goal and setting: what was measured, and whether it meets the goal."""
    lines_of = frontiers(rows)
    by_setting: dict[str, list[MethodSummary]] = defaultdict(list)
    for row in rows:
        by_setting[setting_id(row.setting)].append(row)
    out = []
    for key, members in by_setting.items():
        out.append(f"== {setting_label(members[0].setting)}")
        full = next((r for r in members if r.method == "full"), None)
        # the frontier's methods in other forms (random in whole passes) are baselines, not selection: shown, not
        # candidates for a goal
        baselines = [r for r in members if r.method not in FRONTIER_METHODS and strategy_of(r) in FRONTIER_METHODS]
        methods = [r for r in members if strategy_of(r) not in FRONTIER_METHODS]
        if full is not None:
            out += lossless(full, methods)
        frontier = lines_of.get(key)
        for row in baselines if frontier is not None else []:
            out.append(f"baseline: {row.method} b={row.budget:g} {100 * row.accuracy_mean:.2f} % at "
                       f"{row.time_s:.1f} s, {against_frontier(frontier, row.time_s, row)} against "
                       "the frontier")
        margin = MARGIN_NOISY if members[0].setting.get("label_noise", 0.0) > 0 else MARGIN_CLEAN
        for budget in sorted({r.budget for r in methods}):
            for family in ("adaptive", "online"):
                ranked = [(frontier.verdict(r.time_s, r.accuracy_mean, r.accuracy_se), r) for r in methods
                          if frontier is not None and r.budget == budget and r.family == family]
                ranked = [(v, r) for v, r in ranked if v.gain is not None]
                if not ranked:
                    continue
                best, row = max(ranked, key=lambda pair: pair[0].gain or 0.0)
                verdict = "met" if (best.gain or 0.0) >= margin else "not met"
                out.append(f"above the frontier, {family}, b={budget:g}: best {row.method} {gain_cell(best)} points "
                           f"(goal ≥ {100 * margin:g}; {verdict})")
        for row in methods:
            if strategy_of(row) in ("crest", "stable") and row.method != strategy_of(row):
                out.append(overhead(row, members))
            elif row.family == "online" and row.forward_floor_s:
                ratio = (row.selection_s - row.proxy_s) / row.forward_floor_s
                verdict = "met" if ratio <= FLOOR_RATIO else "not met"
                out.append(f"floor: {row.method} b={row.budget:g} selection {ratio:.2f}× its forwards ({verdict})"
                           f"{loop_part(row, members)}")
                if frontier is not None:
                    out.append(online_costs(row, frontier))
        out += [f"collapsed: {row.method} b={row.budget:g}, {row.collapsed} of {row.seeds} seeds fell back to chance "
                "after learning (in its mean all the same)" for row in members if row.collapsed]
    return out


def main() -> None:
    parser = preset_parser(__doc__.splitlines()[0])
    parser.add_argument("--report-only", action="store_true", help="read the store, run nothing")
    args = parser.parse_args()
    if args.report_only:
        store = ResultStore(args.store or "runs/clock.db")
    else:
        _, store, _ = run_preset_from(args, "clock")
    print("\n".join(goals(summarise_store(store))))


if __name__ == "__main__":
    main()
