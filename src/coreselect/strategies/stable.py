"""Stable coresets via posterior sampling (Chang & Khanna): mini-batch coresets selected on gradient
proxies averaged over a Gaussian posterior around the weights, robust to label noise.

Every ``select_every`` compressed epochs: P = ⌈budget·n / m⌉ class-stratified random subsets; each subset
is forwarded M times, each time under one fresh posterior draw shared by the whole subset
(:func:`~coreselect.models.perturbed`), and its points are embedded as the concatenation of their M logit
gradients softmax(f_{w+ε_s}(x)) − y. Euclidean distance in that space is the Monte-Carlo estimate of the
expected gradient-proxy gap under the posterior, the paper's stability criterion. Per subset, per-class
facility location picks a weighted mini-batch coreset (CREST's routine); the epoch trains on their union.

With ``perturb=last`` on the classifier head alone (``last_layers=1``), the draws touch only the head: the body
is forwarded once and each draw is a matrix product on the penultimate features (the same draws, from the same
generator, as M whole forwards, at the cost of one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from coreselect.models.features import last_linear
from coreselect.models.posterior import PerturbTarget, perturbed, perturbed_parameters, posterior_noise
from coreselect.signals import logit_gradients
from coreselect.strategies.epochs import Selection
from coreselect.strategies.minibatch_coresets import (
    SubsetParams,
    class_members,
    minibatch_coresets,
    stratified_subsets,
)
from coreselect.strategies.periodic import PeriodicParams, PeriodicSelection
from coreselect.strategies.registry import register


class StableParams(PeriodicParams, SubsetParams):
    """Stable coresets' settings; defaults follow the official code's README example."""

    sigma: float = Field(0.01, ge=0, description="posterior standard deviation σ")
    samples: int = Field(4, ge=1, description="M, posterior draws per random subset")
    perturb: PerturbTarget = Field("auto", description="norm (official), all, last, or auto: norm if the model "
                                   "has normalisation layers, else all")
    last_layers: int = Field(1, ge=1, description="with perturb=last: how many parameterised layers")


@register("stable", family="adaptive", params=StableParams,
          summary="mini-batch coresets on logit gradients averaged over a Gaussian posterior (label-noise robust)")
class Stable(PeriodicSelection):
    """Selects one weighted mini-batch coreset per training step of the epoch."""

    params: StableParams

    def reselect(self, k: int) -> Selection:
        p, ctx = self.params, self.context
        m = ctx.batch_size
        subsets = stratified_subsets(class_members(torch.arange(len(ctx.train)), ctx.train.targets),
                                     p.subset_size(len(ctx.train), m), max(1, -(-k // m)), self.generator)
        proxies = (self._head_draws(subsets) if self._head_only()
                   else torch.cat([self.smoothed_proxies(subset) for subset in subsets]))
        targets = torch.cat([ctx.train.targets[s.to(ctx.train.device)].cpu() for s in subsets])
        indices, weights = minibatch_coresets(proxies, subsets, targets, m)
        return Selection(indices, weights)

    def smoothed_proxies(self, subset: torch.Tensor) -> torch.Tensor:
        """[|subset|, M·C]: the subset's logit gradients under M posterior draws (one draw per forward of
        the whole subset), concatenated; eval mode, no gradients."""
        p, ctx = self.params, self.context
        if self._head_only():
            return self._head_draws([subset])
        x, y = ctx.train[subset.to(ctx.train.device)]
        samples = []
        for _ in range(p.samples):  # the draw is shared by every chunk of the subset's forward
            with perturbed(ctx.model, p.sigma, target=p.perturb, last_layers=p.last_layers, generator=self.generator):
                samples.append(logit_gradients(ctx.forward(x).logits, y).cpu())
        ctx.log.count_forward(p.samples * len(subset))
        return torch.cat(samples, dim=1)

    def _head_only(self) -> bool:
        """Whether every draw perturbs the classifier head alone (its weight and bias, nothing else)."""
        p, model = self.params, self.context.model
        if p.perturb != "last" or p.last_layers != 1:
            return False
        head = last_linear(model)
        own = {id(q) for q in head.parameters(recurse=False)}
        return {id(q) for q in perturbed_parameters(model, "last", 1)} == own

    def _head_draws(self, subsets: list[torch.Tensor]) -> torch.Tensor:
        """:meth:`smoothed_proxies` of ``subsets``, concatenated, for head-only draws: one forward of the body over
        all of them, then M perturbed heads per subset (drawn subset by subset, weight then bias, as
        :func:`~coreselect.models.perturbed` draws them), applied to subsets of equal size in one batched product."""
        p, ctx = self.params, self.context
        head = last_linear(ctx.model)
        points = torch.cat(subsets)
        features = ctx.forward(ctx.train, indices=points, with_features=True).features
        assert features is not None
        ctx.log.count_forward(len(points))
        targets = ctx.train.targets[points.to(ctx.train.targets.device)].to(features.device)
        with torch.no_grad():
            weights, biases = [], []
            for _ in range(len(subsets) * p.samples):
                weights.append(head.weight + posterior_noise(head.weight, p.sigma, self.generator))
                biases.append(None if head.bias is None else head.bias + posterior_noise(head.bias, p.sigma,
                                                                                         self.generator))
            if len({len(s) for s in subsets}) == 1:  # [S, n, d] features against [S, M, C, d] heads
                shape = (len(subsets), p.samples, *head.weight.shape)
                logits = torch.einsum("snd,smcd->smnc", features.view(len(subsets), -1, features.shape[1]),
                                      torch.stack(weights).view(shape))
                if head.bias is not None:
                    logits = logits + torch.stack(biases).view(*shape[:2], 1, shape[2])
                grads = logit_gradients(logits.reshape(-1, shape[2]),
                                        targets.view(len(subsets), 1, -1).expand(-1, p.samples, -1).reshape(-1))
                return grads.view(len(subsets), p.samples, -1, shape[2]).transpose(1, 2).reshape(len(points), -1).cpu()
            proxies, start = [], 0
            for i, subset in enumerate(subsets):
                rows = slice(start, start + len(subset))
                draws = range(i * p.samples, (i + 1) * p.samples)
                proxies.append(torch.cat([logit_gradients(F.linear(features[rows], weights[j], biases[j]),
                                                          targets[rows]) for j in draws], dim=1))
                start += len(subset)
        return torch.cat(proxies).cpu()
