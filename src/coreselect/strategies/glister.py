"""GLISTER (Killamsetty et al., AAAI 2021): the subset whose one-step SGD lookahead most improves the
validation log-likelihood, by greedy selection on last-layer gradients in closed form."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pydantic import Field
from torch import Tensor

from coreselect.signals import logit_gradients
from coreselect.strategies.epochs import Selection
from coreselect.strategies.periodic import PeriodicParams, PeriodicSelection
from coreselect.strategies.protocol import Context, check_validation
from coreselect.strategies.registry import register
from coreselect.submodular import class_quotas


class GlisterParams(PeriodicParams):
    """GLISTER's settings (last layer only, as in CORDS; ``select_every`` scaled to 20-epoch runs)."""

    select_every: int = Field(5, ge=1, description="compressed epochs between selections")
    warm_start_epochs: int = Field(2, ge=0, description="compressed epochs on uniform random subsets first, so that "
                                   "the first lookahead is scored by a model that has learned something (at 0 the "
                                   "untrained model picks: 0.8 points less accurate on crest-table)")
    epsilon: float = Field(0.01, gt=0.0, lt=1.0, description="stochastic greedy: (n/k)·ln(1/ε) candidates a pick")
    eta: float | None = Field(None, gt=0.0, description="lookahead step size (default: the configured, peak LR, "
                              "as CORDS; the current LR when the loop does not tell it)")
    per_class: bool = Field(True, description="select within each class (quotas proportional to class sizes) "
                            "against that class's validation loss, as CORDS's PerClass; else over the whole set")


@dataclass(frozen=True)
class LookaheadValidation:
    """The validation examples the lookahead is scored on: logits, penultimate features, one-hot labels."""

    logits: Tensor
    features: Tensor
    onehot: Tensor

    def subset(self, rows: Tensor) -> LookaheadValidation:
        return LookaheadValidation(self.logits[rows], self.features[rows], self.onehot[rows])


def validation_gradient(val_logits: Tensor, val_onehot: Tensor, val_features: Tensor) -> tuple[Tensor, Tensor]:
    """Gradient of the mean validation cross-entropy w.r.t. the last layer's weight (C×d) and bias (C)."""
    val_e = torch.softmax(val_logits, dim=1).sub_(val_onehot)
    return val_e.T @ val_features / len(val_e), val_e.mean(0)


def validation_alignment(e: Tensor, h: Tensor, grad_w: Tensor, grad_b: Tensor) -> Tensor:
    """g_i · ∇L_val for last-layer gradients g_i = [e_i, vec(e_i h_iᵀ)], without materialising g_i."""
    return ((h @ grad_w.T + grad_b) * e).sum(1)


@register("glister", family="adaptive", params=GlisterParams,
          summary="greedy one-step lookahead on the validation log-likelihood (needs --val-fraction)")
class Glister(PeriodicSelection):
    """Stochastic greedy: each pick takes, among (n/k)·ln(1/ε) random candidates, the one with the largest
    gain η · g_i · ∇L_val(θ_S), θ_S = θ − η Σ_{j∈S} g_j the one-step lookahead on the selection so far (the
    summed gradient, as in the paper and CORDS), and updates the validation logits in closed form (a rank-1
    change per pick). g is the last-layer gradient, from logits and penultimate features, never
    materialised. Uniform weights. With ``per_class`` (default) each class gets a quota proportional to its size
    and is selected against its own validation examples: over the whole set the picks follow the classes the
    model gets wrong (measured: class shares from 1 % to 41 % at 10 %, 57–78 % accuracy where random reaches 88 %)."""

    params: GlisterParams

    needs_validation_split = True  # the gradient it matches is the validation loss's (NeedsValidation)

    def setup(self, ctx: Context) -> None:
        check_validation(self, ctx)
        super().setup(ctx)

    def reselect(self, k: int) -> Selection:
        ctx = self.context
        assert ctx.val is not None
        train = ctx.forward(ctx.train, with_features=True)
        val = ctx.forward(ctx.val, with_features=True)
        ctx.log.count_forward(len(ctx.train) + len(ctx.val))
        assert train.features is not None and val.features is not None
        y, val_y = ctx.train.targets.to(train.logits.device), ctx.val.targets.to(val.logits.device)
        e, h = logit_gradients(train.logits, y), train.features.float()
        eta = self.params.eta or ctx.peak_learning_rate or ctx.learning_rate or 0.1
        val_set = LookaheadValidation(val.logits.float(), val.features.float(),
                                      torch.nn.functional.one_hot(val_y, e.shape[1]).float())
        if not self.params.per_class:
            return Selection(self._greedy(e, h, val_set, k, eta).cpu())
        quotas = class_quotas(torch.bincount(y.cpu(), minlength=e.shape[1]), k, proportional=True)
        picks = []
        for c in torch.nonzero(quotas).squeeze(1).tolist():
            members = torch.nonzero(y == c).squeeze(1)
            in_class = val_y == c
            own = val_set.subset(in_class) if bool(in_class.any()) else val_set  # no validation example: all
            picks.append(members[self._greedy(e[members], h[members], own, int(quotas[c]), eta)])
        return Selection(torch.cat(picks).cpu())

    def _greedy(self, e: Tensor, h: Tensor, val: LookaheadValidation, k: int, eta: float) -> Tensor:
        """Positions of ``k`` of the rows of (``e``, ``h``) picked by stochastic greedy against ``val``."""
        logits = val.logits.clone()
        n = len(e)
        sample_size = min(n, math.ceil(n / k * math.log(1 / self.params.epsilon)))
        available = torch.ones(n, dtype=torch.bool, device=e.device)
        picks = torch.empty(k, dtype=torch.long, device=e.device)
        for t in range(k):
            grad_w, grad_b = validation_gradient(logits, val.onehot, val.features)
            gains = torch.full((sample_size,), -torch.inf, device=e.device)
            while bool(torch.isinf(gains).all()):  # candidates drawn with replacement; taken ones are skipped
                sample = torch.randint(n, (sample_size,), generator=self.generator).to(e.device)
                gains = validation_alignment(e[sample], h[sample], grad_w, grad_b)
                gains[~available[sample]] = -torch.inf
            pick = sample[gains.argmax()]
            picks[t] = pick
            available[pick] = False
            # θ_S ← θ_S − η g_pick moves every validation logit by −η (h_v·h_pick + 1) e_pick
            logits -= eta * (val.features @ h[pick] + 1.0)[:, None] * e[pick][None, :]
        return picks
