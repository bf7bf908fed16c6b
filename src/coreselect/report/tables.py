"""Comparison tables computed from the results store: accuracy, relative error, cost and speed-up.

Relative error against full data is ``(acc_full − acc) / acc_full`` in percent, computed per seed
against the mean accuracy of the ``full`` runs of the same setting (CREST's Table 1 convention).
Speed-up is the full run's mean cost over the method's, the cost being selection + training wall-clock plus,
for strategies scored by proxy runs (static coresets, irreducible-loss models), the seconds of those runs.

The answer table (:func:`answer_tables`) puts each method against random's wall-clock frontier
(:mod:`coreselect.report.frontier`) and against its cost floor: the seconds of the no-grad forwards it
asked for, at the per-example forward cost each run measured on its own model and data.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from html import escape

from tabulate import tabulate

from coreselect.experiments.config import setting_label
from coreselect.experiments.store import ResultStore, StoredRun
from coreselect.report.frontier import (
    BEYOND_FRONTIER,
    FRONTIER_METHODS,
    Frontier,
    Verdict,
    frontier_points,
    frontiers,
    setting_id,
    standard_error,
)
from coreselect.strategies.registry import STRATEGIES
from coreselect.train.collapse import COLLAPSE
from coreselect.train.forgetting import FORGETTING
from coreselect.train.gradient_error import ABSOLUTE, RELATIVE
from coreselect.train.noisy_share import NOISY_TRAINED
from coreselect.train.precision import PRECISION

REFERENCE = "full"


@dataclass(frozen=True)
class MethodSummary:
    setting: dict
    method: str
    budget: float
    seeds: int
    accuracy_mean: float
    accuracy_std: float
    relative_error_mean: float | None
    relative_error_std: float | None
    time_s: float
    selection_share: float
    speedup: float | None
    gradient_error: float | None = None  # mean relative gradient error of the selections, if recorded
    noisy_share: float | None = None  # mean share of corrupted labels among the selected, under label noise
    family: str = ""  # reference, static, adaptive or online
    time_std: float = 0.0
    steps: float | None = None  # optimizer steps, mean over seeds
    examples: float | None = None  # back-propagated examples, mean over seeds
    selection_s: float = 0.0  # selection seconds (proxy runs included), mean over seeds
    proxy_s: float = 0.0  # seconds of the proxy runs it scored with, mean over seeds
    forwarded: float | None = None  # examples forwarded for selection, mean over seeds
    forward_floor_s: float | None = None  # forwarded × the run's measured forward seconds per example, mean
    collapsed: int = 0  # seeds whose test accuracy fell back to chance after learning (in the mean all the same)
    ran_in: tuple[str, ...] = ()  # "training fp32 · selection bf16": the precisions its seeds ran in (auto resolved)

    @property
    def accuracy_se(self) -> float:
        """The standard error of the mean test accuracy."""
        return standard_error(self.accuracy_std, self.seeds)


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs: list[StoredRun], gradient_errors: dict[str, float] | None = None,
              noisy_shares: dict[str, float] | None = None,
              proxy_seconds: dict[str, float] | None = None,
              collapsed: set[str] | None = None, ran_in: dict[str, str] | None = None) -> list[MethodSummary]:
    """One row per (setting, method, budget) over the finished runs, references first.

    ``gradient_errors`` maps run ids to their mean relative gradient error (see :func:`gradient_errors`),
    ``noisy_shares`` to the mean share of corrupted labels in their selections (:func:`noisy_shares`),
    ``proxy_seconds`` to the seconds of the proxy runs they scored with (:func:`proxy_seconds`), which count
    in their cost and speed-up; ``collapsed`` holds the ids of runs that collapsed (:func:`collapsed_runs`);
    ``ran_in`` maps run ids to the precisions they ran in (:func:`precisions_ran_in`).
    """
    gradient_errors, noisy_shares, proxy_seconds = gradient_errors or {}, noisy_shares or {}, proxy_seconds or {}
    ran_in = ran_in or {}
    collapsed = collapsed or set()
    groups: dict[str, dict[tuple[str, float], list[StoredRun]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.status == "done" and run.test_accuracy is not None:
            groups[run.config.setting_key][(run.config.method_label, run.config.train.budget)].append(run)
    rows = []
    for setting_key, methods in groups.items():
        full = [r for (name, _), rs in methods.items() if name == REFERENCE for r in rs]
        full_acc = statistics.fmean(r.test_accuracy for r in full) if full else None  # type: ignore[misc]
        full_time = statistics.fmean(r.learning_s for r in full) if full else None
        ordered = sorted(methods.items(), key=lambda kv: (kv[0][0] != REFERENCE, -kv[0][1], kv[0][0]))
        for (name, budget), rs in ordered:
            accs = [float(r.test_accuracy) for r in rs]  # type: ignore[arg-type]
            rel = [100.0 * (full_acc - a) / full_acc for a in accs] if full_acc else None
            times = [r.learning_s + proxy_seconds.get(r.run_id, 0.0) for r in rs]
            time_s = statistics.fmean(times)
            selection = statistics.fmean((r.selection_s or 0.0) + proxy_seconds.get(r.run_id, 0.0) for r in rs)
            floors = [r.forward_floor_s for r in rs]
            errors = [gradient_errors[r.run_id] for r in rs if r.run_id in gradient_errors]
            noisy = [noisy_shares[r.run_id] for r in rs if r.run_id in noisy_shares]
            rows.append(MethodSummary(
                setting=json.loads(setting_key),
                method=name,
                budget=budget,
                seeds=len(rs),
                accuracy_mean=statistics.fmean(accs),
                accuracy_std=_std(accs),
                relative_error_mean=statistics.fmean(rel) if rel else None,
                relative_error_std=_std(rel) if rel else None,
                time_s=time_s,
                selection_share=selection / time_s if time_s > 0 else 0.0,
                speedup=full_time / time_s if full_time and time_s > 0 else None,
                gradient_error=statistics.fmean(errors) if errors else None,
                noisy_share=statistics.fmean(noisy) if noisy else None,
                family=STRATEGIES[rs[0].config.strategy].family if rs[0].config.strategy in STRATEGIES else "",
                time_std=_std(times),
                steps=statistics.fmean(r.steps or 0 for r in rs),
                examples=statistics.fmean(r.examples or 0 for r in rs),
                selection_s=selection,
                proxy_s=statistics.fmean(proxy_seconds.get(r.run_id, 0.0) for r in rs),
                forwarded=statistics.fmean(r.selection_forward_examples or 0 for r in rs),
                forward_floor_s=None if None in floors else statistics.fmean(f or 0.0 for f in floors),
                collapsed=sum(r.run_id in collapsed for r in rs),
                ran_in=tuple(sorted({ran_in[r.run_id] for r in rs if r.run_id in ran_in})),
            ))
    return rows


def summarise_store(store: ResultStore, runs: list[StoredRun] | None = None) -> list[MethodSummary]:
    """:func:`summarise` of ``runs`` (default: every finished run of ``store``) with their gradient errors, noisy
    shares, proxy seconds and collapses from the store."""
    runs = store.runs(status="done") if runs is None else runs
    return summarise(runs, gradient_errors(store, runs), noisy_shares(store, runs), proxy_seconds(store, runs),
                     collapsed_runs(store, runs), precisions_ran_in(store, runs))


def gain_cell(verdict: Verdict) -> str:
    """The gain over the frontier in points, ± its standard error where the seeds give one."""
    if verdict.gain is None:
        return "— (faster than random)"
    return f"{100 * verdict.gain:+.2f}" + (f" ± {100 * verdict.gain_se:.2f}" if verdict.gain_se else "")


def accuracy_cell(row: MethodSummary) -> str:
    """Mean ± std of the test accuracy in percent, with the number of collapsed seeds when there are any."""
    cell = f"{100 * row.accuracy_mean:.2f} ± {100 * row.accuracy_std:.2f}"
    return cell + (f" ({row.collapsed} collapsed)" if row.collapsed else "")


COLLAPSED_NOTE = ("collapsed: seeds whose test accuracy fell back to chance after the run had learned, with a finite "
                  "loss (a diverged run, counted in the mean; train.clip_norm keeps it from happening)")


def format_table(rows: list[MethodSummary], tablefmt: str = "github") -> str:
    """The summary as a text table (any ``tabulate`` format)."""
    with_imbalance = any(r.setting.get("imbalance", 1.0) != 1.0 for r in rows)
    headers = [*_setting_headers(with_imbalance), "method", "budget", "seeds", "test acc (%)",
               "rel. error (%)", "time (s)", "selection", "speed-up"]
    with_gradient_error = any(r.gradient_error is not None for r in rows)
    if with_gradient_error:
        headers.append("grad. error")
    with_noise = any(r.noisy_share is not None for r in rows)
    if with_noise:
        headers.append("noisy selected")
    table = []
    for r in rows:
        rel = "—"
        if r.relative_error_mean is not None:  # rounded first so that a tiny negative prints as 0.00
            rel = f"{round(r.relative_error_mean, 2) + 0.0:.2f} ± {r.relative_error_std:.2f}"
        table.append([
            *_setting_cells(r.setting, with_imbalance), r.method, f"{r.budget:g}",
            r.seeds, accuracy_cell(r), rel, f"{r.time_s:.1f}",
            f"{100 * r.selection_share:.1f}%", "—" if r.speedup is None else f"{r.speedup:.2f}×",
        ])
        if with_gradient_error:
            table[-1].append("—" if r.gradient_error is None else f"{r.gradient_error:.3f}")
        if with_noise:
            table[-1].append("—" if r.noisy_share is None else f"{100 * r.noisy_share:.1f}%")
    return tabulate(table, headers=headers, tablefmt=tablefmt, disable_numparse=True)


STEPS_TOLERANCE = 0.05  # a row whose optimizer steps differ more from random's at its budget is flagged


@dataclass(frozen=True)
class AnswerTable:
    """One setting's answer to "which method should I use here?": the table and its caption."""

    setting: dict
    caption: str
    table: str


def answer_tables(rows: list[MethodSummary], tablefmt: str = "github") -> list[AnswerTable]:
    """Per setting, every method sorted by test accuracy, with its family, seconds, the verdict against random's
    wall-clock frontier, its optimizer steps (flagged ⚠ when more than 5 % off random's at the same budget),
    its selection share and its selection seconds over its cost floor. Columns constant over a table move to
    its caption. ``tablefmt="html"`` marks each family with a coloured badge."""
    by_setting: dict[str, list[MethodSummary]] = defaultdict(list)
    for row in rows:
        by_setting[setting_id(row.setting)].append(row)
    lines = frontiers(rows)
    out = []
    for key, members in by_setting.items():
        frontier = lines.get(key)
        random_rows = {r.budget: r for r in members if r.method == "random"}
        html = tablefmt == "html"  # the family as a coloured badge beside the name, not a column of its own
        headers = ["method", *([] if html else ["family"]), "budget", "seeds", "test acc (%)", "seconds",
                   "vs random (points)", "seconds saved", "steps", "selection", "selection ÷ floor", "speed-up"]
        table = []
        for r in sorted(members, key=lambda r: (-r.accuracy_mean, r.time_s)):
            gain, saved = _verdict_cells(r, frontier)
            name = _html_method(r.method, r.family) if html else r.method
            table.append([
                name, *([] if html else [r.family]), f"{r.budget:g}", str(r.seeds),
                accuracy_cell(r), f"{r.time_s:.1f}", gain, saved,
                _steps_cell(r, random_rows.get(r.budget)), f"{100 * r.selection_share:.1f}%",
                _floor_cell(r), "—" if r.speedup is None else f"{r.speedup:.2f}×"])
        headers, table, constant = _move_constant_columns(headers, table, keep={"method", "test acc (%)", "seconds"})
        caption = [f"{setting_label(members[0].setting)}: methods sorted by test accuracy (mean ± std over seeds); "
                   "seconds = selection + training + proxy runs"]
        if frontier is None:
            caption.append("no frontier: run random at two budgets or more (grid option `frontier = true`)")
        else:
            random_budgets = sorted(p.budget for p in frontier_points(members)[key] if p.budget < 1)
            budgets = ", ".join(f"{b:g}" for b in random_budgets)
            caption.append(f"vs random: accuracy over random's wall-clock frontier (random at budgets {budgets}, "
                           "full data) at "
                           "the method's seconds (± one standard error from the seeds' spread, method's and "
                           "frontier's); seconds saved: the frontier's seconds to the method's accuracy "
                           "minus the method's (negative: random is better value)")
        caption.append("steps ⚠: more than 5 % off random's at the same budget (random's truncated last batch of "
                       "each epoch aside); selection ÷ floor: selection (proxy runs apart) "
                       "seconds over the seconds of the no-grad forwards the method asked for")
        if any(r.collapsed for r in members):
            caption.append(COLLAPSED_NOTE)
        train = members[0].setting["train"]
        if "auto" in (train.get("precision"), train.get("selection_precision")):
            ran = sorted({p for r in members for p in r.ran_in})
            caption.append(f"auto precision ran as {' and '.join(ran) if ran else 'unrecorded'}")
        caption += constant
        out.append(AnswerTable(members[0].setting, "; ".join(caption) + ".",
                               tabulate(table, headers=headers, tablefmt="unsafehtml" if html else tablefmt,
                                        disable_numparse=True)))
    return out


def answers(rows: list[MethodSummary], tablefmt: str = "github") -> str:
    """Every setting's answer table with its caption, as text: what a person reads first."""
    return "\n\n".join(f"Which method here? {a.caption}\n{a.table}" for a in answer_tables(rows, tablefmt))


def _html_method(label: str, family: str) -> str:
    """The strategy's name and family badge, its non-default parameters on a line of their own (they wrap)."""
    name, _, params = label.partition("(")
    params = params.removesuffix(")").replace(",", ", ")
    cell = f'{escape(name)} <span class="family family-{family}">{family}</span>'
    return cell + (f'<br><span class="params">{escape(params)}</span>' if params else "")


def _verdict_cells(row: MethodSummary, frontier: Frontier | None) -> tuple[str, str]:
    if row.method in FRONTIER_METHODS:
        return "frontier", "frontier"
    if frontier is None:
        return "—", "—"
    verdict = frontier.verdict(row.time_s, row.accuracy_mean, row.accuracy_se)
    gain = gain_cell(verdict)
    if verdict.seconds_saved is not None:
        return gain, f"{verdict.seconds_saved:+.1f} s"
    return gain, "beyond frontier" if BEYOND_FRONTIER in verdict.note else "below frontier"


def _steps_cell(row: MethodSummary, random: MethodSummary | None) -> str:
    if row.steps is None:
        return "—"
    return f"{row.steps:.0f}" + (" ⚠" if random is not None and steps_off(row, random) else "")


def steps_off(row: MethodSummary, random: MethodSummary) -> bool:
    """Whether ``row`` took more than 5 % more or fewer optimizer steps than ``random`` at the same budget, random's
    truncated last batch of each compressed epoch aside: its steps lie outside [every batch full, random's]."""
    if row.steps is None or random.steps is None or not random.examples:
        return False
    every_batch_full = math.ceil(random.examples / row.setting["train"]["batch_size"])
    return not (1 - STEPS_TOLERANCE) * every_batch_full <= row.steps <= (1 + STEPS_TOLERANCE) * random.steps


def _floor_cell(row: MethodSummary) -> str:
    if row.forward_floor_s is None:
        return "—"
    if row.forward_floor_s <= 0:
        return "no forwards"
    return f"{(row.selection_s - row.proxy_s) / row.forward_floor_s:.1f}×"


def _move_constant_columns(headers: list[str], table: list[list[str]],
                           keep: set[str]) -> tuple[list[str], list[list[str]], list[str]]:
    """Columns (other than ``keep``) whose value is the same in every row, removed, and "header value" for each."""
    if len(table) < 2:
        return headers, table, []
    constant = [i for i, h in enumerate(headers) if h and h not in keep and len({row[i] for row in table}) == 1]
    moved = [f"{headers[i]} {table[0][i]}" for i in constant]
    kept = [i for i in range(len(headers)) if i not in constant]
    return [headers[i] for i in kept], [[row[i] for i in kept] for row in table], moved


def cost_floor_table(rows: list[MethodSummary], tablefmt: str = "github") -> str | None:
    """Per method: examples forwarded for selection, the seconds those forwards cost at the run's measured forward
    cost (the floor), the selection seconds (proxy runs apart), the overhead beyond the floor, and the proxy
    runs' seconds; None if no run measured it."""
    measured = [r for r in rows if r.forward_floor_s is not None and r.method != REFERENCE]
    if not measured:
        return None
    with_imbalance = any(r.setting.get("imbalance", 1.0) != 1.0 for r in rows)
    table = []
    for r in measured:
        floor, selection = r.forward_floor_s or 0.0, r.selection_s - r.proxy_s
        table.append([*_setting_cells(r.setting, with_imbalance), r.method, f"{r.budget:g}",
                      f"{r.forwarded or 0:.0f}", f"{floor:.2f}", f"{selection:.2f}", f"{selection - floor:.2f}",
                      "—" if floor <= 0 else f"{selection / floor:.1f}×", f"{r.proxy_s:.2f}"])
    headers = [*_setting_headers(with_imbalance), "method", "budget", "forwarded examples", "floor (s)",
               "selection (s)", "overhead (s)", "selection ÷ floor", "proxy runs (s)"]
    return tabulate(table, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def gradient_errors(store: ResultStore, runs: list[StoredRun]) -> dict[str, float]:
    """Mean relative gradient error over each run's evaluation points, for runs that recorded it."""
    out = {}
    for run in runs:
        values = [e.extras[RELATIVE] for e in store.evaluations(run.run_id) if RELATIVE in e.extras]
        if values:
            out[run.run_id] = statistics.fmean(values)
    return out


def proxy_seconds(store: ResultStore, runs: list[StoredRun]) -> dict[str, float]:
    """Seconds of the proxy runs each run's strategy scored with (static coresets, holdout models), if any."""
    out = {}
    for run in runs:
        history = store.evaluations(run.run_id)
        if history and "proxy_s" in history[-1].extras:
            out[run.run_id] = float(history[-1].extras["proxy_s"])
    return out


def collapsed_runs(store: ResultStore, runs: list[StoredRun]) -> set[str]:
    """The ids of the runs whose test accuracy fell back to chance after they had learned
    (:mod:`coreselect.train.collapse`)."""
    return {run.run_id for run in runs if store.record(run.run_id, COLLAPSE) is not None}


def precisions_ran_in(store: ResultStore, runs: list[StoredRun]) -> dict[str, str]:
    """The precisions each run's training and selection forwards ran in, ``auto`` made concrete for its device
    (``training fp32 · selection bf16``), for the runs that recorded them."""
    out = {}
    for run in runs:
        record = store.record(run.run_id, PRECISION)
        if record is not None:
            out[run.run_id] = f"training {record['training']} · selection {record['selection']}"
    return out


def noisy_shares(store: ResultStore, runs: list[StoredRun]) -> dict[str, float]:
    """Share of corrupted labels in each noisy run's selections: the mean over its selection rounds when it
    stores them, else the share among all the examples it back-propagated (online strategies; recorded by
    :class:`~coreselect.train.noisy_share.NoisyShare`). Full-data runs see every example, so theirs is the
    noise rate itself."""
    out = {}
    for run in runs:
        if run.config.label_noise <= 0:
            continue
        shares = [s["noisy_share"] for s in store.selections(run.run_id) if s["noisy_share"] is not None]
        if shares:
            out[run.run_id] = statistics.fmean(shares)
            continue
        history = store.evaluations(run.run_id)
        if history and NOISY_TRAINED in history[-1].extras:
            out[run.run_id] = float(history[-1].extras[NOISY_TRAINED])
    return out


@dataclass(frozen=True)
class TargetReached:
    """When a run first reached a test accuracy: in epochs (passes over its data stream, i.e. the share of
    its budget spent times its epochs) and in selection + training seconds."""

    epochs: float
    seconds: float


def time_to_target(store: ResultStore, run: StoredRun, target: float) -> TargetReached | None:
    """The first evaluation at or above ``target`` accuracy (a fraction), or None if the run never got there."""
    total = run.examples or 0
    for e in store.evaluations(run.run_id):
        if e.test_accuracy >= target and total:
            return TargetReached(e.examples / total * run.config.train.epochs, e.selection_s + e.training_s)
    return None


def time_to_target_table(store: ResultStore, runs: list[StoredRun], targets: list[float], *,
                         relative: bool = False, tablefmt: str = "github") -> str:
    """Epochs and seconds (selection + training) to each target per (setting, method, budget), mean over the seeds
    that reached it, with how many did ("never" when none). ``relative`` targets are fractions of the setting's
    mean full-data accuracy."""
    reference: dict[str, list[float]] = defaultdict(list)
    for r in runs:
        if r.config.method_label == REFERENCE:
            reference[r.config.setting_key].append(r.test_accuracy or 0.0)
    full_acc = {k: statistics.fmean(v) for k, v in reference.items()}
    table = []
    with_imbalance = any(r.config.imbalance != 1.0 for r in runs)
    for (setting_key, method, budget), rs in _method_groups(runs).items():
        cells = []
        for target in targets:
            absolute = target * full_acc[setting_key] if relative and setting_key in full_acc else target
            reached = [t for t in (time_to_target(store, r, absolute) for r in rs) if t is not None]
            cells.append("never" if not reached else
                         f"{statistics.fmean(t.epochs for t in reached):.1f} ep · "
                         f"{statistics.fmean(t.seconds for t in reached):.1f} s ({len(reached)}/{len(rs)})")
        accs = [100 * (r.test_accuracy or 0.0) for r in rs]
        table.append([*_setting_cells(json.loads(setting_key), with_imbalance), method, f"{budget:g}", len(rs),
                      f"{statistics.fmean(accs):.2f} ± {_std(accs):.2f}", *cells])
    names = [f"{100 * t:g}% of full" if relative else f"{100 * t:g}%" for t in targets]
    headers = [*_setting_headers(with_imbalance), "method", "budget", "seeds", "final acc (%)",
               *(f"to {n}: epochs · seconds (seeds)" for n in names)]
    return tabulate(table, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def _method_groups(runs: list[StoredRun]) -> dict[tuple[str, str, float], list[StoredRun]]:
    groups: dict[tuple[str, str, float], list[StoredRun]] = defaultdict(list)
    for run in runs:
        groups[(run.config.setting_key, run.config.method_label, run.config.train.budget)].append(run)
    return groups


def _setting_headers(with_imbalance: bool) -> list[str]:
    return ["dataset", "model", "epochs", "noise", *(["imbalance"] if with_imbalance else [])]


def _setting_cells(setting: dict, with_imbalance: bool = False) -> list[str]:
    cells = [setting["dataset"], setting["model"], str(setting["train"]["epochs"]), f"{setting['label_noise']:g}"]
    return [*cells, f"{setting.get('imbalance', 1.0):g}"] if with_imbalance else cells


def instrumentation_table(store: ResultStore, runs: list[StoredRun], tablefmt: str = "github") -> str | None:
    """A strategy's own counters at the end of training (``metrics()``: e.g. CREST's coreset updates and
    seconds per component), averaged over seeds, beside the run's training seconds; None if none recorded."""
    finals: dict[str, dict[str, float]] = {}
    for run in runs:
        evaluations = store.evaluations(run.run_id)
        extras = {k: v for k, v in (evaluations[-1].extras if evaluations else {}).items()
                  if k not in (ABSOLUTE, RELATIVE, NOISY_TRAINED)}
        if extras:
            finals[run.run_id] = extras
    if not finals:
        return None
    keys = sorted({k for extras in finals.values() for k in extras})
    with_imbalance = any(r.config.imbalance != 1.0 for r in runs)
    table = []
    for (setting_key, method, budget), rs in _method_groups([r for r in runs if r.run_id in finals]).items():
        cells = [statistics.fmean(finals[r.run_id].get(k, float("nan")) for r in rs) for k in keys]
        table.append([*_setting_cells(json.loads(setting_key), with_imbalance), method, f"{budget:g}", len(rs),
                      f"{statistics.fmean(r.training_s or 0.0 for r in rs):.1f}", *(f"{c:.6g}" for c in cells)])
    headers = [*_setting_headers(with_imbalance), "method", "budget", "seeds", "training_s", *keys]
    return tabulate(table, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def selection_forgetting(store: ResultStore, runs: list[StoredRun], parts: int = 4) -> dict[str, list[float]]:
    """Per run with selections: the mean forgetting score of its selected examples in each of ``parts``
    equal spans of its training steps, the score taken from the ``full`` run of the same setting and seed
    (how hard the selections are as training goes on; CREST's analysis). NaN where a span selected nothing."""
    reference: dict[tuple[str, int], StoredRun] = {
        (r.config.setting_key, r.config.seed): r for r in runs if r.config.method_label == REFERENCE
    }
    out = {}
    for run in runs:
        full = reference.get((run.config.setting_key, run.config.seed))
        if full is None or run is full or not run.steps:
            continue
        scores = store.example_scores(full.run_id, FORGETTING)
        rounds = store.selections(run.run_id)
        if scores is None or not rounds:
            continue
        spans: list[list[float]] = [[] for _ in range(parts)]
        for r in rounds:
            spans[min(parts - 1, r["step"] * parts // run.steps)].append(float(scores[r["indices"]].nanmean()))
        out[run.run_id] = [statistics.fmean(v) if v else float("nan") for v in spans]
    return out


def forgetting_table(store: ResultStore, runs: list[StoredRun], parts: int = 4,
                     tablefmt: str = "github") -> str | None:
    """:func:`selection_forgetting` averaged over seeds, beside the mean score of all training examples."""
    per_run = selection_forgetting(store, runs, parts)
    if not per_run:
        return None
    table = []
    with_imbalance = any(r.config.imbalance != 1.0 for r in runs)
    for (setting_key, method, budget), rs in _method_groups([r for r in runs if r.run_id in per_run]).items():
        full = [r for r in runs if r.config.method_label == REFERENCE and r.config.setting_key == setting_key]
        all_mean = statistics.fmean(float(store.example_scores(f.run_id, FORGETTING).nanmean()) for f in full)
        spans = [statistics.fmean(per_run[r.run_id][i] for r in rs) for i in range(parts)]
        table.append([*_setting_cells(json.loads(setting_key), with_imbalance), method, f"{budget:g}", len(rs),
                      f"{all_mean:.3f}", *("—" if math.isnan(v) else f"{v:.3f}" for v in spans)])
    headers = [*_setting_headers(with_imbalance), "method", "budget", "seeds", "all examples",
               *(f"part {i + 1}/{parts}" for i in range(parts))]
    return tabulate(table, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def report(store: ResultStore, tablefmt: str = "github") -> str:
    """The comparison table, then the strategies' instrumentation and the hardness of their selections."""
    runs = store.runs(status="done")
    rows = summarise_store(store, runs)
    if not rows:
        return f"no finished runs in {store.path}; run `coreselect train ... --store {store.path}` first"
    sections = [answers(rows, tablefmt), "All runs:\n" + format_table(rows, tablefmt)]
    floor = cost_floor_table(rows, tablefmt)
    if floor is not None:
        sections.append("Selection seconds against the cost floor (the no-grad forwards each method asked for):\n"
                        + floor)
    instrumentation = instrumentation_table(store, runs, tablefmt)
    if instrumentation is not None:
        sections.append("Strategy instrumentation at the end of training (mean over seeds; *_s in seconds):\n"
                        + instrumentation)
    forgetting = forgetting_table(store, runs, tablefmt=tablefmt)
    if forgetting is not None:
        sections.append("Forgetting score of the selected examples (from the full-data run of the same seed), "
                        "by part of training:\n" + forgetting)
    return "\n\n".join(sections)
