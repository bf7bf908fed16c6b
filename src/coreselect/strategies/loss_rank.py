"""Rank-based selection by the latest loss (Loshchilov & Hutter, ICLR 2016 workshop), scored by the training steps.

Each pass over the data, at the start: every example is ranked by its latest training loss (rank 0 the highest;
examples not trained on yet rank above all, ties in random order) and b·n of them are drawn without replacement
with probability ∝ exp(−ln(s)·rank / n), so that the highest-ranked example is about s times as likely as the
lowest (the paper's selection pressure s_e). The paper ranks by each example's latest known loss and refreshes
them by periodic forwards over the set; here the losses are those the training steps computed (the
training-signal cache, as InfoBatch reads it), so it forwards nothing for selection. Losses are not reweighted,
as in the paper: training leans towards the examples it has not learned yet.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor

from coreselect.strategies.epochs import Selection
from coreselect.strategies.registry import StrategyParams, register
from coreselect.strategies.step_losses import StepLossScored


class LossRankParams(StrategyParams):
    """The selection pressure; its default chosen on the `clock` protocol (seeds 3-5, among 3, 10 and 100)."""

    pressure: float = Field(100.0, ge=1.0, description="s: the highest-ranked example's selection probability over "
                            "the lowest's (1: uniform)")


def rank_probabilities(scores: Tensor, pressure: float, generator: torch.Generator) -> Tensor:
    """Each example's probability of being drawn: ∝ exp(−ln(pressure)·rank / n), rank 0 for the highest score,
    ties ranked in random order."""
    n = len(scores)
    shuffled = torch.randperm(n, generator=generator)
    order = shuffled[torch.argsort(scores[shuffled], descending=True, stable=True)]
    rank = torch.empty(n, dtype=torch.float64)
    rank[order] = torch.arange(n, dtype=torch.float64)
    probabilities = torch.exp(-math.log(pressure) * rank / n)
    return probabilities / probabilities.sum()


@register("loss-rank", family="adaptive", params=LossRankParams, reads_training_signals=True,
          summary="rank-based selection (Loshchilov & Hutter): b·n examples a pass, drawn with probability falling "
                  "exponentially in the rank of their latest training loss (no extra forward)")
class LossRank(StepLossScored):
    """See the module docstring."""

    params: LossRankParams

    def select(self, epoch: int) -> Selection:
        ctx = self.context
        probabilities = rank_probabilities(self.step_losses(unseen=math.inf), self.params.pressure, self.generator)
        indices = torch.multinomial(probabilities.float(), ctx.budget.epoch_examples, replacement=False,
                                    generator=self.generator)
        ctx.log.record(indices)
        return Selection(indices)
