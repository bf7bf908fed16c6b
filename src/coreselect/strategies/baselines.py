"""Full data and the random baselines."""

from __future__ import annotations

import torch

from coreselect.strategies.epochs import EpochStrategy, Selection
from coreselect.strategies.registry import register


@register("full", family="reference", summary="every example, reshuffled each epoch (budget forced to 1)",
          full_data=True)
class FullData(EpochStrategy):
    """Plain SGD over the whole training set."""

    def select(self, epoch: int) -> Selection | None:
        return Selection(torch.arange(len(self.context.train))) if epoch == 0 else None


@register("random", family="adaptive", summary="a fresh uniformly random subset of the budget's size every epoch")
class RandomSubsets(EpochStrategy):
    """Each compressed epoch trains on a new uniform random subset of ``budget · n`` examples."""

    def select(self, epoch: int) -> Selection:
        ctx = self.context
        indices = torch.randperm(len(ctx.train), generator=self.generator)[: ctx.budget.epoch_examples]
        ctx.log.record(indices)
        return Selection(indices)


@register("random-subset", family="static", summary="one fixed uniformly random subset of the budget's size")
class FixedRandomSubset(RandomSubsets):
    """A single random subset of ``budget · n`` examples, drawn once and trained on for every epoch."""

    def select(self, epoch: int) -> Selection | None:  # type: ignore[override]
        return super().select(epoch) if epoch == 0 else None
