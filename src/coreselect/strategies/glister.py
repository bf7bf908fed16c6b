"""GLISTER (Killamsetty et al., AAAI 2021): the subset whose one-step SGD lookahead most improves the
validation log-likelihood, by greedy selection on last-layer gradients in closed form."""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor

from coreselect.signals import forward_in_batches, logit_gradients
from coreselect.strategies.epochs import Selection
from coreselect.strategies.periodic import PeriodicParams, PeriodicSelection
from coreselect.strategies.protocol import Context, check_validation
from coreselect.strategies.registry import register


class GlisterParams(PeriodicParams):
    """GLISTER's settings (last layer only, as in CORDS; ``select_every`` scaled to 20-epoch runs)."""

    select_every: int = Field(5, ge=1, description="compressed epochs between selections")
    epsilon: float = Field(0.01, gt=0.0, lt=1.0, description="stochastic greedy: (n/k)·ln(1/ε) candidates a pick")
    eta: float | None = Field(None, gt=0.0, description="lookahead step size (default: the current LR)")


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
    materialised. Uniform weights."""

    name = "glister"

    def __init__(self, params: GlisterParams | None = None) -> None:
        super().__init__()
        self.params = params or GlisterParams()

    needs_validation_split = True  # the gradient it matches is the validation loss's (NeedsValidation)

    def setup(self, ctx: Context) -> None:
        check_validation(self, ctx)
        super().setup(ctx)

    def reselect(self, k: int) -> Selection:
        ctx = self.context
        assert ctx.val is not None
        train = forward_in_batches(ctx.model, ctx.train, with_features=True)
        val = forward_in_batches(ctx.model, ctx.val, with_features=True)
        ctx.log.count_forward(len(ctx.train) + len(ctx.val))
        assert train.features is not None and val.features is not None
        e, h = logit_gradients(train.logits, ctx.train.targets.to(train.logits.device)), train.features.float()
        val_h, val_y = val.features.float(), ctx.val.targets.to(val.logits.device)
        eta = self.params.eta or ctx.learning_rate or 0.1
        logits = val.logits.float().clone()
        ones_hot = torch.nn.functional.one_hot(val_y, e.shape[1]).to(e.dtype)
        n = len(e)
        sample_size = min(n, math.ceil(n / k * math.log(1 / self.params.epsilon)))
        available = torch.ones(n, dtype=torch.bool, device=e.device)
        picks = torch.empty(k, dtype=torch.long, device=e.device)
        for t in range(k):
            grad_w, grad_b = validation_gradient(logits, ones_hot, val_h)
            gains = torch.full((sample_size,), -torch.inf, device=e.device)
            while bool(torch.isinf(gains).all()):  # candidates drawn with replacement; taken ones are skipped
                sample = torch.randint(n, (sample_size,), generator=self.generator).to(e.device)
                gains = validation_alignment(e[sample], h[sample], grad_w, grad_b)
                gains[~available[sample]] = -torch.inf
            pick = sample[gains.argmax()]
            picks[t] = pick
            available[pick] = False
            # θ_S ← θ_S − η g_pick moves every validation logit by −η (h_v·h_pick + 1) e_pick
            logits -= eta * (val_h @ h[pick] + 1.0)[:, None] * e[pick][None, :]
        return Selection(picks.cpu())
