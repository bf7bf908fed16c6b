"""InfoBatch (Qin et al., ICLR 2024): dynamic pruning scored by the losses training already computed.

Each pass over the data, at the start: the score of an example is the loss of its latest training forward
(:class:`~coreselect.signals.TrainingSignals`; ``initial_score`` before its first one), H̄ their mean over the
whole set, D = {H < H̄} the well-learned examples. Official form: every example with H ≥ H̄ (weight 1) and a
uniform ⌊(1 − r)·|D|⌋ of D (keep ratio 1 − r clamped to ≥ 0.1), their losses rescaled by |D| / kept (the
official 1/(1 − r), made exact for the floor, so that the expected weighted gradient sum is the full set's).
Budgeted form (``budgeted=true``): exactly the budget's b·n examples per compressed epoch: all of H ≥ H̄ if they
fit (else a uniform b·n of them, weight 1), the rest drawn uniformly from D with weight |D| / drawn.
Annealing: once a share δ of the budget is spent, passes are uniform and unweighted (official form: the whole
set; budgeted form: a uniform b·n). No selection forward at all.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from coreselect.errors import InvalidInputError
from coreselect.strategies.epochs import EpochStrategy, Selection
from coreselect.strategies.protocol import Batch, StepOutput
from coreselect.strategies.registry import StrategyParams, register


class InfoBatchParams(StrategyParams):
    """InfoBatch's settings; defaults follow the official code."""

    prune_ratio: float = Field(0.5, ge=0, lt=1, description="r: share of the below-mean-loss examples pruned")
    delta: float = Field(0.875, gt=0, le=1, description="δ: share of the budget after which passes are unpruned")
    initial_score: float = Field(3.0, description="score of an example before its first training forward")
    budgeted: bool = Field(False, description="spend exactly the budget's b·n examples per compressed epoch")


def prune(scores: Tensor, keep_ratio: float, generator: torch.Generator) -> Selection:
    """The official pass: every example scored at or above the mean (weight 1) and a uniform ⌊keep_ratio·|D|⌋ of
    the below-mean set D, weighted |D| / kept."""
    well = torch.nonzero(scores < scores.mean()).squeeze(1)
    hard = torch.nonzero(scores >= scores.mean()).squeeze(1)
    kept = int(keep_ratio * len(well))
    chosen = well[torch.randperm(len(well), generator=generator)[:kept]]
    weights = torch.cat([torch.ones(len(hard)), torch.full((kept,), len(well) / max(kept, 1))])
    return Selection(torch.cat([hard, chosen]), weights)


def prune_to_budget(scores: Tensor, size: int, generator: torch.Generator) -> Selection:
    """The budgeted pass: exactly ``size`` examples, the at-or-above-mean ones first (a uniform ``size`` of them
    if they are more), the rest uniform from the below-mean set D weighted |D| / drawn."""
    well = torch.nonzero(scores < scores.mean()).squeeze(1)
    hard = torch.nonzero(scores >= scores.mean()).squeeze(1)
    if len(hard) >= size:
        return Selection(hard[torch.randperm(len(hard), generator=generator)[:size]], torch.ones(size))
    drawn = size - len(hard)
    chosen = well[torch.randperm(len(well), generator=generator)[:drawn]]
    weights = torch.cat([torch.ones(len(hard)), torch.full((drawn,), len(well) / drawn)])
    return Selection(torch.cat([hard, chosen]), weights)


@register("infobatch", family="adaptive", params=InfoBatchParams, reads_training_signals=True,
          summary="InfoBatch: prunes part of the below-mean-loss examples each pass, scored by the training steps' "
                  "own losses (no extra forward), rescaled; unpruned at the end")
class InfoBatch(EpochStrategy):
    """See the module docstring."""

    name = "infobatch"

    def __init__(self, params: InfoBatchParams | None = None) -> None:
        super().__init__()
        self.params = params or InfoBatchParams()
        self.trained = 0  # examples back-propagated so far (from observe): the budget share spent

    def scores(self) -> Tensor:
        """The latest training loss of each example (``initial_score`` where it has none yet)."""
        signals = self.context.training_signals
        if self.trained and not signals.steps_recorded:
            raise InvalidInputError("infobatch scores by the training-signal cache, which no step has filled: call "
                                    "ctx.signals.record(...) after each step in your own loop (the Trainer does)")
        return torch.where(signals.seen(), signals.loss, torch.full_like(signals.loss, self.params.initial_score))

    def select(self, epoch: int) -> Selection:
        p, ctx = self.params, self.context
        n, size = len(ctx.train), ctx.budget.epoch_examples
        if self.trained >= p.delta * ctx.budget.total_examples:  # annealing: uniform, unweighted
            order = torch.randperm(n, generator=self.generator)
            selection = Selection(order[:size] if p.budgeted else order)
        elif p.budgeted:
            selection = prune_to_budget(self.scores(), size, self.generator)
        else:
            selection = prune(self.scores(), max(1.0 - p.prune_ratio, 0.1), self.generator)
        ctx.log.record(selection.indices, selection.weights)
        return selection

    def observe(self, batch: Batch, out: StepOutput) -> None:
        self.trained += len(batch)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "trained": self.trained}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.trained = state["trained"]
