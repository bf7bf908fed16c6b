"""Random's wall-clock frontier: what plain random selection reaches in a given number of seconds.

Random at several budgets and full data (budget 1) give points (seconds, accuracy), seconds being selection +
training + proxy runs, averaged over seeds. Sorted by seconds, a point that is not more accurate than a cheaper
one is dominated and dropped, so the frontier rises strictly and can be read both ways. Between points it is
interpolated linearly in log-seconds (accuracy grows about linearly in the log of training time); past its
last point it stays flat (more seconds than full data buys random nothing more); before its first point it
is undefined.

A method is judged against it by its *gain*, accuracy over the frontier at the method's own seconds (negative:
random would have done better with the same time), and its *seconds saved*, the frontier's seconds to reach
the method's accuracy minus the method's (negative: random reaches that accuracy sooner).

The gain's *standard error* says how far it is from noise: the method's accuracy and the frontier's interpolated
accuracy each carry their seeds' standard error (std / √seeds; the frontier's, its two points' weighted as the
interpolation weights them), combined as independent. Seconds are taken as measured.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coreselect.report.tables import MethodSummary

FRONTIER_METHODS = ("random", "full")  # default random at any budget, and the full-data reference


@dataclass(frozen=True)
class FrontierPoint:
    """Random at one budget (or full data, budget 1), mean and std over seeds."""

    budget: float
    seconds: float
    accuracy: float
    accuracy_std: float = 0.0
    seconds_std: float = 0.0
    seeds: int = 1

    @property
    def accuracy_se(self) -> float:
        """The standard error of the mean accuracy."""
        return standard_error(self.accuracy_std, self.seeds)


def standard_error(std: float, seeds: int) -> float:
    """The standard error of a mean over ``seeds`` runs whose standard deviation is ``std``."""
    return std / math.sqrt(seeds) if seeds > 0 else 0.0


@dataclass(frozen=True)
class Verdict:
    """A method against the frontier; ``note`` says why a value is missing."""

    gain: float | None  # accuracy (fraction) over the frontier at the method's seconds
    seconds_saved: float | None  # frontier seconds to the method's accuracy − the method's seconds
    note: str = ""
    gain_se: float | None = None  # the gain's standard error (module docstring), where there is a gain


FASTER_THAN_FRONTIER = "faster than random's cheapest run"
BEYOND_FRONTIER = "more accurate than the whole frontier"
BELOW_FRONTIER = "less accurate than random's cheapest run"


class Frontier:
    """The non-dominated points of random's runs, rising in seconds and accuracy."""

    def __init__(self, points: list[FrontierPoint]) -> None:
        if not points:
            raise ValueError("a frontier needs at least one point")
        kept: list[FrontierPoint] = []
        for point in sorted(points, key=lambda p: (p.seconds, -p.accuracy)):
            if point.seconds <= 0:
                raise ValueError(f"a frontier point needs positive seconds, got {point.seconds}")
            if not kept or point.accuracy > kept[-1].accuracy:
                kept.append(point)
        self.points = kept
        self.dominated = [p for p in points if p not in kept]

    def _bracket(self, seconds: float) -> tuple[FrontierPoint, FrontierPoint, float] | None:
        """The points around ``seconds`` and its share of the way from the first to the second in log-seconds
        (past the last point: the last twice, share 0); None before the first point."""
        first, last = self.points[0], self.points[-1]
        if seconds < first.seconds:
            return None
        if seconds >= last.seconds:
            return last, last, 0.0
        for a, b in zip(self.points, self.points[1:], strict=False):
            if a.seconds <= seconds <= b.seconds:
                return a, b, (math.log(seconds) - math.log(a.seconds)) / (math.log(b.seconds) - math.log(a.seconds))
        raise AssertionError("unreachable: the points cover [first, last]")

    def accuracy_at(self, seconds: float) -> float | None:
        """The frontier's accuracy at ``seconds``; None before its first point."""
        bracket = self._bracket(seconds)
        if bracket is None:
            return None
        a, b, share = bracket
        return a.accuracy + share * (b.accuracy - a.accuracy)

    def accuracy_se_at(self, seconds: float) -> float | None:
        """The standard error of :meth:`accuracy_at` from its points' (seeds independent); None before the
        first point."""
        bracket = self._bracket(seconds)
        if bracket is None:
            return None
        a, b, share = bracket
        return math.hypot((1 - share) * a.accuracy_se, share * b.accuracy_se)

    def seconds_to(self, accuracy: float) -> float | None:
        """The frontier's seconds to reach ``accuracy``; None outside its range of accuracies."""
        first, last = self.points[0], self.points[-1]
        if accuracy < first.accuracy or accuracy > last.accuracy:
            return None
        if accuracy == first.accuracy:
            return first.seconds
        for a, b in zip(self.points, self.points[1:], strict=False):
            if a.accuracy <= accuracy <= b.accuracy:
                share = (accuracy - a.accuracy) / (b.accuracy - a.accuracy)
                return math.exp(math.log(a.seconds) + share * (math.log(b.seconds) - math.log(a.seconds)))
        raise AssertionError("unreachable: the points cover [first, last]")

    def verdict(self, seconds: float, accuracy: float, accuracy_se: float = 0.0) -> Verdict:
        """Gain (with its standard error, ``accuracy_se`` being the method's) and seconds saved of a method that
        reached ``accuracy`` in ``seconds``."""
        at, at_se = self.accuracy_at(seconds), self.accuracy_se_at(seconds)
        needed = self.seconds_to(accuracy)
        notes = []
        if at is None:
            notes.append(FASTER_THAN_FRONTIER)
        if needed is None:
            notes.append(BEYOND_FRONTIER if accuracy > self.points[-1].accuracy else BELOW_FRONTIER)
        return Verdict(None if at is None else accuracy - at, None if needed is None else needed - seconds,
                       "; ".join(notes), None if at_se is None else math.hypot(accuracy_se, at_se))


def frontier_points(rows: list[MethodSummary]) -> dict[str, list[FrontierPoint]]:
    """Random's (default parameters) and full data's summary rows as frontier points, per setting
    (``json.dumps(setting, sort_keys=True)``)."""
    points: dict[str, list[FrontierPoint]] = {}
    for row in rows:
        if row.method in FRONTIER_METHODS and row.time_s > 0:
            points.setdefault(setting_id(row.setting), []).append(FrontierPoint(
                row.budget, row.time_s, row.accuracy_mean, row.accuracy_std, row.time_std, row.seeds))
    return points


def frontiers(rows: list[MethodSummary]) -> dict[str, Frontier]:
    """Random's frontier per setting, where random ran at two budgets or more (full data counting as one)."""
    return {key: Frontier(points) for key, points in frontier_points(rows).items() if len(points) >= 2}


def setting_id(setting: dict) -> str:
    """A setting (a :class:`MethodSummary`'s) as a key."""
    return json.dumps(setting, sort_keys=True)
