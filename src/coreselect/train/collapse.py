"""Collapse: a run whose test accuracy fell back to chance after it had learned, with a finite loss.

Short runs of one-cycle SGD on small coresets sometimes blow up near the learning-rate peak without the loss
becoming NaN: the network ends up predicting one class, and the run goes on to its end at chance accuracy. The
trainer stops on a NaN loss; this catches the other case. A run has *learned* once its test accuracy has reached
halfway from chance to 100 %, and has *collapsed* at the first later evaluation whose accuracy lies within a
tenth of that range of chance, chance being the share of the test set's most common class (what predicting
one class scores). It is a diagnostic: the trainer warns and the report marks the run; nothing is steered by it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torch import Tensor

    from coreselect.train.trainer import EvalRecord

LEARNED = 0.5  # share of the way from chance to 100 % a run must reach to have learned
NEAR_CHANCE = 0.1  # share of that range above chance within which a run that had learned has collapsed
COLLAPSE = "collapse"  # the name of the run's record in the results store


@dataclass(frozen=True)
class Collapse:
    """Where a run fell back to chance: its best evaluation before, and the first one near chance."""

    peak_step: int
    peak_accuracy: float
    step: int
    accuracy: float
    chance: float

    def describe(self) -> str:
        return (f"test accuracy fell from {100 * self.peak_accuracy:.2f} % (step {self.peak_step}) to "
                f"{100 * self.accuracy:.2f} % at step {self.step} (predicting one class scores "
                f"{100 * self.chance:.2f} %)")


def chance_accuracy(targets: Tensor) -> float:
    """The accuracy of always predicting the most common label of ``targets``."""
    return float(torch.bincount(targets.cpu()).max()) / len(targets) if len(targets) else 0.0


def find_collapse(history: Sequence[EvalRecord], chance: float) -> Collapse | None:
    """The first collapse in ``history`` (evaluations in step order), or None (see the module docstring)."""
    learned = chance + LEARNED * (1.0 - chance)
    near_chance = chance + NEAR_CHANCE * (1.0 - chance)
    peak: EvalRecord | None = None
    for record in history:
        if peak is not None and peak.test_accuracy >= learned and record.test_accuracy <= near_chance:
            return Collapse(peak.step, peak.test_accuracy, record.step, record.test_accuracy, chance)
        if peak is None or record.test_accuracy > peak.test_accuracy:
            peak = record
    return None
