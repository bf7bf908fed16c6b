"""Bayesian data selection (Deng, Cui, Zhu, NeurIPS 2023): online batch selection by the lower bound on the
reduction of generalisation loss, with a last-layer KFAC Laplace posterior and a validation model.

The KFAC factors are averaged from the training steps' own forward (the strategy declares
:class:`~coreselect.strategies.protocol.NeedsFeatures`: the loop hands each step's penultimate features in
``StepOutput.features``); the candidates' logits and features come from the selection forward. The
validation model is the model trained on the holdout split (its logits looked up by index, as the
irreducible-loss model is) or a local CLIP-style zero-shot classifier (``validation=zero_shot``,
``zero_shot_path``). Before the first update, S = 1 with f_θ.
See :mod:`coreselect.signals.laplace` for the formulas.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from coreselect.distributed import local_only, world
from coreselect.errors import InvalidInputError
from coreselect.models.zero_shot import load_zero_shot
from coreselect.signals import logit_gradients
from coreselect.signals.laplace import (
    KfacFactors,
    bayesian_score,
    bayesian_score_closed_form,
    logit_variance_and_factor,
    sample_logits,
    target_log_probs,
)
from coreselect.strategies.online import HoldoutParams, HoldoutScored
from coreselect.strategies.protocol import Batch, Context, StepOutput
from coreselect.strategies.proxy import ProxyRequest
from coreselect.strategies.registry import register


class BayesianParams(HoldoutParams):
    """Defaults: the official code's CIFAR-10 settings."""

    alpha: float = Field(0.2, ge=0, le=1, description="trust in the training posterior vs the validation model")
    effective_data: float = Field(200.0, gt=0, description="n_e, effective data size of the posterior")
    prior_precision: float = Field(10.0, gt=0, description="τ₀")
    samples: int = Field(256, ge=1, description="S, function samples per candidate")
    expectation: Literal["samples", "closed_form"] = Field(
        "samples", description="samples: Monte Carlo over S function samples (official); closed_form: both "
        "posterior expectations in closed form (second-order and probit approximations), no samples")
    kfac_momentum: float = Field(0.99, ge=0, lt=1, description="ρ of the factor averages")
    validation: Literal["holdout", "zero_shot"] = "holdout"
    zero_shot_path: str | None = Field(None, description="folder of a zero-shot checkpoint (validation=zero_shot)")
    zero_shot_temperature: float = Field(4.0, gt=0, description="T of the zero-shot logits")


@register("bayesian", family="online", params=BayesianParams,
          summary="Bayesian data selection: last-layer KFAC Laplace samples and a validation / zero-shot model")
class BayesianSelection(HoldoutScored):
    params: BayesianParams
    needs_step_features = True  # the KFAC factors average the training steps' own features (NeedsFeatures)

    def __init__(self, params: BayesianParams | None = None) -> None:
        super().__init__(params)
        p = self.params
        self.factors = KfacFactors(p.kfac_momentum)
        self.zero_shot: nn.Module | None = None

    def setup(self, ctx: Context) -> None:
        super().setup(ctx)
        p = self.params
        if p.validation == "zero_shot":
            if p.zero_shot_path is None:
                raise InvalidInputError("validation=zero_shot needs zero_shot_path, the checkpoint folder")
            self.zero_shot = load_zero_shot(p.zero_shot_path, p.zero_shot_temperature, ctx.train.num_classes)
            self.zero_shot.to(ctx.device)

    @classmethod
    def request_for(cls, params: BayesianParams) -> ProxyRequest | None:  # type: ignore[override]
        return super().request_for(params) if params.validation == "holdout" else None

    def validation_log_probs(self, candidates: Tensor, inputs: Tensor, targets: Tensor) -> Tensor:
        """The validation model's log-probability of each candidate's label: the zero-shot model's from its
        forward, or the holdout model's, computed once for the training set and looked up."""
        if self.zero_shot is not None:
            with torch.no_grad():
                return target_log_probs(self.zero_shot(inputs).float(), targets)
        if self.holdout_logits is None:
            raise InvalidInputError("strategy 'bayesian' needs a validation model: run it with `coreselect train "
                                    "--holdout 0.5`, call provide(), or use validation=zero_shot")
        return self.holdout_log_probs()[candidates.cpu()].to(inputs.device)

    def score(self, candidates: Tensor) -> Tensor:
        """Scores of the candidates; in a distributed job each rank scores its contiguous part (forward, posterior
        samples, score) and the scores are gathered."""
        p, ctx, group = self.params, self.context, world()
        n = len(candidates)
        sharded = group.splits(n)
        start, stop = group.bounds(n) if sharded else (0, n)
        mine = candidates[start:stop]
        x, y = ctx.train[mine]
        ctx.log.count_forward(n)
        with local_only():
            out = ctx.forward(x, batch_size=max(len(mine), 1), with_features=True)
        assert out.features is not None
        targets = y.to(out.logits.device)
        validation = self.validation_log_probs(mine, x, targets)
        if self.factors.count == 0:
            scores = bayesian_score(out.logits[None], validation, targets, p.alpha)
        else:
            variance, inv_chol_t = logit_variance_and_factor(out.features, self.factors, p.effective_data,
                                                             p.prior_precision)
            if p.expectation == "closed_form":
                scores = bayesian_score_closed_form(out.logits, variance, inv_chol_t, validation, targets, p.alpha)
            else:
                samples = sample_logits(out.logits, variance, inv_chol_t, p.samples, self.generator,
                                        within=(start, n))
                scores = bayesian_score(samples, validation, targets, p.alpha)
        return group.gather_parts(scores, n) if sharded else scores

    def observe(self, batch: Batch, out: StepOutput) -> None:
        super().observe(batch, out)
        if out.features is None:
            raise InvalidInputError("strategy 'bayesian' needs each step's penultimate features (StepOutput.features):"
                                    " capture them with coreselect.PenultimateFeatures in your loop (the Trainer and "
                                    "the integrations do)")
        targets = self.context.train.targets[batch.indices.to(self.context.train.device)]
        self.factors.update(out.features, logit_gradients(out.logits, targets.to(out.logits.device)))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "factors": self.factors.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.factors.load_state_dict(state["factors"])
