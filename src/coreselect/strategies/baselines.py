"""Full data and the random baselines."""

from __future__ import annotations

import torch
from pydantic import Field

from coreselect.strategies.epochs import EpochStrategy, Selection
from coreselect.strategies.registry import StrategyParams, register


@register("full", family="reference", summary="every example, reshuffled each epoch (budget forced to 1)",
          full_data=True)
class FullData(EpochStrategy):
    """Plain SGD over the whole training set."""

    def select(self, epoch: int) -> Selection | None:
        return Selection(torch.arange(len(self.context.train))) if epoch == 0 else None


class RandomParams(StrategyParams):
    """How random draws the examples of its budget."""

    whole_passes: bool = Field(False, description="shuffled passes over the whole training set until the budget "
                               "is spent (every example equally often: fewer epochs of full data) instead of a "
                               "fresh b·n subset each compressed epoch")


@register("random", family="adaptive", params=RandomParams,
          summary="a fresh uniformly random subset of the budget's size every epoch (whole_passes: fewer epochs of "
                  "full data)")
class RandomSubsets(EpochStrategy):
    """Each compressed epoch trains on a new uniform random subset of ``budget · n`` examples; with
    ``whole_passes``, on shuffled passes over the whole set until the budget is spent (every example trained on
    ⌊b·E⌋ or ⌈b·E⌉ times rather than Binomial(E, b) times)."""

    params: RandomParams

    def select(self, epoch: int) -> Selection | None:
        if self.params.whole_passes:
            return self.whole_set() if epoch == 0 else None
        return self.fresh_subset()

    def whole_set(self) -> Selection:
        """Every example of the training set, recorded in the selection log."""
        indices = torch.arange(len(self.context.train))
        self.context.log.record(indices)
        return Selection(indices)

    def fresh_subset(self) -> Selection:
        """A uniform random ``budget · n`` of the training set, recorded in the selection log."""
        ctx = self.context
        indices = torch.randperm(len(ctx.train), generator=self.generator)[: ctx.budget.epoch_examples]
        ctx.log.record(indices)
        return Selection(indices)


@register("random-subset", family="static", summary="one fixed uniformly random subset of the budget's size")
class FixedRandomSubset(RandomSubsets):
    """A single random subset of ``budget · n`` examples, drawn once and trained on for every epoch."""

    def select(self, epoch: int) -> Selection | None:
        return self.fresh_subset() if epoch == 0 else None
