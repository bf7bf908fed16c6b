"""GradMatch (Killamsetty et al., ICML 2021): weighted subsets whose gradient sum matches the full
(or validation) gradient, by non-negative orthogonal matching pursuit on last-layer gradients."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from coreselect.distributed import world
from coreselect.matching import nonnegative_omp
from coreselect.signals import last_layer_gradients, logit_gradients
from coreselect.strategies.epochs import Selection
from coreselect.strategies.periodic import PeriodicParams, PeriodicSelection
from coreselect.strategies.protocol import Context, check_validation
from coreselect.strategies.registry import register
from coreselect.submodular import class_quotas, normalise_weights


class GradMatchParams(PeriodicParams):
    """GradMatch's settings; CORDS defaults except ``select_every`` (scaled to 20-epoch runs)."""

    variant: Literal["per_batch", "per_class"] = Field("per_batch", description="atoms: mini-batches or examples")
    select_every: int = Field(5, ge=1, description="compressed epochs between selections")
    lam: float = Field(0.0, ge=0.0, description="ridge penalty λ on the weights")
    valid: bool = Field(False, description="match the validation gradient instead of the training gradient")


def _last_layer_grads(ctx: Context, inputs: Tensor, targets: Tensor) -> Tensor:
    out = ctx.forward(inputs, with_features=True)
    ctx.log.count_forward(len(targets))
    assert out.features is not None
    return last_layer_gradients(logit_gradients(out.logits, targets.to(out.logits.device)), out.features.float())


@register("gradmatch", family="adaptive", params=GradMatchParams,
          summary="non-negative OMP matching of last-layer gradients (per batch or per class), weighted")
class GradMatch(PeriodicSelection):
    """Atoms are per-example (``per_class``) or per-mini-batch (``per_batch``) mean gradients; the budget
    left by an early stop of the pursuit is filled uniformly at random with weight 1."""

    params: GradMatchParams

    @property
    def needs_validation_split(self) -> bool:
        """With ``valid=true`` the target is the validation gradient (NeedsValidation)."""
        return self.params.valid

    def setup(self, ctx: Context) -> None:
        check_validation(self, ctx)
        super().setup(ctx)

    def _target(self, train_mean: Tensor, scale: int, classes: Tensor | None = None) -> Tensor:
        """The mean gradient to match (training, or validation restricted to ``classes``), times ``scale``
        so that unit weights on ``scale`` atoms are the natural scale."""
        ctx = self.context
        if not self.params.valid or ctx.val is None:
            return train_mean * scale
        mask = torch.ones_like(ctx.val.targets, dtype=torch.bool) if classes is None else \
            torch.isin(ctx.val.targets, classes.to(ctx.val.targets.device))
        return _last_layer_grads(ctx, *ctx.val[torch.nonzero(mask).squeeze(1)]).mean(0) * scale

    def _per_class(self, k: int) -> tuple[Tensor, Tensor]:
        ctx, p = self.context, self.params
        targets = ctx.train.targets.cpu()
        classes = torch.unique(targets)
        quotas = class_quotas(torch.stack([(targets == c).sum() for c in classes]), k, proportional=True)
        problems = [(c, quota) for c, quota in zip(classes, quotas.tolist(), strict=True) if quota > 0]

        def solve(problem: tuple[Tensor, int]) -> tuple[Tensor, Tensor]:
            c, quota = problem
            members = torch.nonzero(targets == c).squeeze(1)
            grads = _last_layer_grads(ctx, *ctx.train[members])
            result = nonnegative_omp(grads, self._target(grads.mean(0), quota, c.view(1)), quota, lam=p.lam)
            keep = (result.weights > 0).cpu()
            return members[result.indices.cpu()[keep]], result.weights.cpu()[keep]

        solved = world().share_work(solve, problems)  # one OMP per class, classes dealt across ranks
        return torch.cat([i for i, _ in solved]), torch.cat([w for _, w in solved])

    def _per_batch(self, k: int) -> tuple[Tensor, Tensor]:
        """Atoms are the mean last-layer gradients of a random partition into mini-batches."""
        ctx, p = self.context, self.params
        size = ctx.batch_size
        order = torch.randperm(len(ctx.train), generator=self.generator)
        batches = order[: len(order) // size * size].view(-1, size)
        inputs, targets = ctx.train[batches.flatten()]
        out = ctx.forward(inputs, with_features=True)
        ctx.log.count_forward(batches.numel())
        assert out.features is not None
        e = logit_gradients(out.logits, targets).view(len(batches), size, -1)
        h = out.features.float().view(len(batches), size, -1)
        atoms = torch.cat([e.mean(1), torch.bmm(e.transpose(1, 2), h).flatten(1) / size], dim=1)
        n_batches = max(1, round(k / size))
        result = nonnegative_omp(atoms, self._target(atoms.mean(0), n_batches), n_batches, lam=p.lam)
        keep = (result.weights > 0).cpu()
        indices = batches[result.indices.cpu()[keep]].flatten()
        weights = result.weights.cpu()[keep].repeat_interleave(size)
        return indices[:k], weights[:k]

    def reselect(self, k: int) -> Selection:
        p, ctx = self.params, self.context
        indices, weights = self._per_batch(k) if p.variant == "per_batch" else self._per_class(k)
        missing = k - len(indices)
        if missing > 0:  # fill the budget uniformly at random, weight 1
            mask = torch.ones(len(ctx.train), dtype=torch.bool)
            mask[indices] = False
            pool = torch.nonzero(mask).squeeze(1)
            extra = pool[torch.randperm(len(pool), generator=self.generator)[:missing]]
            indices = torch.cat([indices, extra])
            weights = torch.cat([weights.float(), torch.ones(len(extra))])
        return Selection(indices, normalise_weights(weights.float()))
