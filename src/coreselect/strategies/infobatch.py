"""InfoBatch (Qin et al., ICLR 2024): dynamic pruning scored by the losses training already computed.

Each pass over the data, at the start: the score of an example is the loss of its latest training forward
(:class:`~coreselect.signals.TrainingSignals`; ``initial_score`` before its first one), H̄ their mean over the
whole set, D = {H < H̄} the well-learned examples. Official form: every example with H ≥ H̄ (weight 1) and a
uniform ⌊(1 − r)·|D|⌋ of D (keep ratio 1 − r clamped to ≥ 0.1), their losses rescaled by |D| / kept (the
official 1/(1 − r), made exact for the floor, so that the expected weighted gradient sum is the full set's).
Budgeted form (``budgeted=true``): exactly the budget's b·n examples per compressed epoch, a uniform share q of
H ≥ H̄ and (1 − r)·q of D (q as large as the budget allows), each weighted by its set's size over the kept count
and normalised to mean 1: D weighs at most 1/(1 − r) times H, as in the official form (weighting D by |D| / drawn
after keeping all of H put weights of 35 on a few examples at b = 0.3, and the run diverged).
Annealing: once a share δ of the budget is spent, passes are uniform and unweighted (official form: the whole
set; budgeted form: a uniform b·n). No selection forward at all.
``drop_hardest=β`` (ours, after CCS's β: mislabelled examples sit among the highest losses): every pass, the
share β of the examples already scored with the highest scores sits out, and all of the above acts on the rest
(its mean, its rescaling, its annealing passes). An example sitting out is not forwarded, so its score is not
refreshed: once out, it stays out unless the losses of the others rise above it.
``drop_hardest="auto"`` (ours) estimates β once, for labels of unknown quality: at the first pass that starts after
the model has trained on more examples than the set holds, β is the share of the scored examples whose latest loss
exceeds ln K (the model gives their label less than chance probability 1/K); nobody sits out before. Under
symmetric noise nearly all mislabelled examples are there and few others (Fashion-MNIST / LeNet, 30 % noise: 29 %
of the set, 92 % of them mislabelled); on clean labels few examples are (4 %).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import torch
from pydantic import Field
from torch import Tensor

from coreselect.strategies.epochs import Selection
from coreselect.strategies.registry import StrategyParams, register
from coreselect.strategies.step_losses import StepLossScored
from coreselect.submodular import normalise_weights


class InfoBatchParams(StrategyParams):
    """InfoBatch's settings; defaults follow the official code."""

    prune_ratio: float = Field(0.5, ge=0, lt=1, description="r: share of the below-mean-loss examples pruned")
    delta: float = Field(0.875, gt=0, le=1, description="δ: share of the budget after which passes are unpruned")
    initial_score: float = Field(3.0, description="score of an example before its first training forward")
    budgeted: bool = Field(False, description="spend exactly the budget's b·n examples per compressed epoch")
    drop_hardest: Annotated[float, Field(ge=0, lt=1)] | Literal["auto"] = Field(
        0.0, description="β: share of the scored examples with the highest losses left out of every pass (under "
        "label noise, mostly the mislabelled ones); 'auto': estimated once, after a set's worth of training, as the "
        "share whose loss exceeds ln K (label below chance)")


def below_chance_share(losses: Tensor, num_classes: int) -> float:
    """The share of ``losses`` above ln K: examples whose label the model gives less than chance probability."""
    return float((losses > math.log(num_classes)).float().mean()) if len(losses) else 0.0


def prune(scores: Tensor, keep_ratio: float, generator: torch.Generator) -> Selection:
    """The official pass: every example scored at or above the mean (weight 1) and a uniform ⌊keep_ratio·|D|⌋ of
    the below-mean set D, weighted |D| / kept."""
    well = torch.nonzero(scores < scores.mean()).squeeze(1)
    hard = torch.nonzero(scores >= scores.mean()).squeeze(1)
    kept = int(keep_ratio * len(well))
    chosen = well[torch.randperm(len(well), generator=generator)[:kept]]
    weights = torch.cat([torch.ones(len(hard)), torch.full((kept,), len(well) / max(kept, 1))])
    return Selection(torch.cat([hard, chosen]), weights)


def prune_to_budget(scores: Tensor, size: int, keep_ratio: float, generator: torch.Generator) -> Selection:
    """The budgeted pass: exactly ``size`` examples, a uniform share q of the at-or-above-mean set H and a uniform
    share ``keep_ratio``·q of the below-mean set D (q as large as the budget allows, at most 1; D then gets the
    rest), each kept example weighted by its set's size over the kept count, weights normalised to mean 1.

    The expected weighted gradient is the full set's mean gradient, D's weight is at most 1/keep_ratio times H's
    (the official rescale), and no weight grows without bound when the budget leaves little room for D."""
    well = torch.nonzero(scores < scores.mean()).squeeze(1)
    hard = torch.nonzero(scores >= scores.mean()).squeeze(1)
    share = min(1.0, size / max(len(hard) + keep_ratio * len(well), 1e-12))
    kept_hard = min(len(hard), size, round(share * len(hard)))
    kept_well = min(len(well), size - kept_hard)
    kept_hard = size - kept_well  # rounding: the budget is spent exactly
    chosen = [part[torch.randperm(len(part), generator=generator)[:kept]]
              for part, kept in ((hard, kept_hard), (well, kept_well))]
    weights = torch.cat([torch.full((kept_hard,), len(hard) / max(kept_hard, 1)),
                         torch.full((kept_well,), len(well) / max(kept_well, 1))])
    return Selection(torch.cat(chosen), normalise_weights(weights))


@register("infobatch", family="adaptive", params=InfoBatchParams, reads_training_signals=True,
          summary="InfoBatch: prunes part of the below-mean-loss examples each pass, scored by the training steps' "
                  "own losses (no extra forward), rescaled; unpruned at the end")
class InfoBatch(StepLossScored):
    """See the module docstring."""

    params: InfoBatchParams

    def __init__(self, params: InfoBatchParams | None = None) -> None:
        super().__init__(params)
        self.estimated_share: float | None = None  # β under drop_hardest="auto", once estimated

    def scores(self) -> Tensor:
        """The latest training loss of each example (``initial_score`` where it has none yet)."""
        return self.step_losses(unseen=self.params.initial_score)

    def drop_share(self, scored: Tensor) -> float:
        """β of this pass: ``drop_hardest``, or under ``"auto"`` the share estimated once from the scored
        examples' scores ``scored`` (0 until then)."""
        if self.params.drop_hardest != "auto":
            return self.params.drop_hardest
        if self.estimated_share is None and self.trained > len(self.context.train):
            self.estimated_share = below_chance_share(scored, self.context.train.num_classes)
        return self.estimated_share or 0.0

    def pool(self, scores: Tensor) -> Tensor:
        """The indices a pass draws from: all but the share β (:meth:`drop_share`) of the scored examples with
        the highest scores (never so many that a budgeted pass would lack examples)."""
        n, seen = len(scores), self.context.training_signals.seen()
        count = int(self.drop_share(scores[seen]) * int(seen.sum()))
        if self.params.budgeted:
            count = min(count, n - self.context.budget.epoch_examples)
        if count <= 0:
            return torch.arange(n)
        kept = torch.ones(n, dtype=torch.bool)
        kept[torch.topk(torch.where(seen, scores, torch.full_like(scores, -math.inf)), count).indices] = False
        return torch.nonzero(kept).squeeze(1)

    def select(self, epoch: int) -> Selection:
        p, ctx = self.params, self.context
        size, scores = ctx.budget.epoch_examples, self.scores()
        pool, keep_ratio = self.pool(scores), max(1.0 - p.prune_ratio, 0.1)
        if self.trained >= p.delta * ctx.budget.total_examples:  # annealing: uniform, unweighted
            order = torch.randperm(len(pool), generator=self.generator)  # positions in the pool, as below
            selection = Selection(order[:size] if p.budgeted else order)
        elif p.budgeted:
            selection = prune_to_budget(scores[pool], size, keep_ratio, self.generator)
        else:
            selection = prune(scores[pool], keep_ratio, self.generator)
        selection = Selection(pool[selection.indices], selection.weights)
        ctx.log.record(selection.indices, selection.weights)
        return selection

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "estimated_share": self.estimated_share}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.estimated_share = state.get("estimated_share")
