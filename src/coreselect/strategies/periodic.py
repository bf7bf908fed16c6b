"""Strategies that re-select every few (compressed) epochs, after an optional warm start."""

from __future__ import annotations

from abc import abstractmethod
from typing import Literal

from pydantic import Field

from coreselect.strategies.epochs import EpochStrategy, Selection
from coreselect.strategies.gradient_features import uniform_subset
from coreselect.strategies.registry import StrategyParams
from coreselect.submodular import normalise_weights


class PeriodicParams(StrategyParams):
    """When to select: every ``select_every`` epochs, after ``warm_start_epochs`` of random subsets."""

    select_every: int = Field(1, ge=1, description="compressed epochs between selections")
    warm_start_epochs: int = Field(0, ge=0, description="compressed epochs on uniform random subsets first")
    batch_weights: Literal["batch", "selection"] = Field(
        "batch", description="batch: weights rescaled to mean 1 within each mini-batch (CORDS; a few large "
        "cluster weights cannot scale a step up); selection: mean 1 over the whole selection")
    max_weight: float | None = Field(None, gt=1, description="clip weights at this multiple of their mean (1), "
                                     "then rescale to mean 1: no example outweighs a batch (None: unclipped)")


class PeriodicSelection(EpochStrategy):
    """Uniform random subsets during the warm start, then :meth:`reselect` every ``select_every`` epochs."""

    params: PeriodicParams

    @property
    def normalises_batches(self) -> bool:
        return self.params.batch_weights == "batch"

    def select(self, epoch: int) -> Selection | None:
        p, ctx = self.params, self.context
        k = ctx.budget.epoch_examples
        if epoch < p.warm_start_epochs:
            indices = uniform_subset(ctx, k, self.generator)
            ctx.log.record(indices)
            return Selection(indices)
        if (epoch - p.warm_start_epochs) % p.select_every:
            return None
        selection = self.reselect(k)
        if p.max_weight is not None and selection.weights is not None:
            selection = Selection(selection.indices, normalise_weights(selection.weights.clamp(max=p.max_weight)))
        ctx.log.record(selection.indices, selection.weights)
        return selection

    @abstractmethod
    def reselect(self, k: int) -> Selection:
        """A new selection of ``k`` training examples at the current model."""
