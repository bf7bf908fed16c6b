"""GradMatch (Killamsetty et al., ICML 2021): weighted subsets whose gradient sum matches the full
(or validation) gradient, by non-negative orthogonal matching pursuit on last-layer gradients."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from coreselect.errors import InvalidInputError
from coreselect.matching import nonnegative_omp
from coreselect.signals import forward_in_batches, last_layer_gradients, logit_gradients
from coreselect.strategies.epochs import Selection
from coreselect.strategies.periodic import PeriodicParams, PeriodicSelection
from coreselect.strategies.protocol import Context
from coreselect.strategies.registry import register
from coreselect.submodular import class_quotas, normalise_weights


class GradMatchParams(PeriodicParams):
    """GradMatch's settings; CORDS defaults except ``select_every`` (scaled to 20-epoch runs)."""

    variant: Literal["per_batch", "per_class"] = Field("per_batch", description="atoms: mini-batches or examples")
    select_every: int = Field(5, ge=1, description="compressed epochs between selections")
    lam: float = Field(0.0, ge=0.0, description="ridge penalty λ on the weights")
    valid: bool = Field(False, description="match the validation gradient instead of the training gradient")


def _last_layer_grads(ctx: Context, inputs: Tensor, targets: Tensor) -> Tensor:
    out = forward_in_batches(ctx.model, inputs, with_features=True)
    ctx.log.count_forward(len(targets))
    assert out.features is not None
    return last_layer_gradients(logit_gradients(out.logits, targets.to(out.logits.device)), out.features.float())


@register("gradmatch", family="adaptive", params=GradMatchParams,
          summary="non-negative OMP matching of last-layer gradients (per batch or per class), weighted")
class GradMatch(PeriodicSelection):
    """Atoms are per-example (``per_class``) or per-mini-batch (``per_batch``) mean gradients; the budget
    left by an early stop of the pursuit is filled uniformly at random with weight 1."""

    name = "gradmatch"

    def __init__(self, params: GradMatchParams | None = None) -> None:
        super().__init__()
        self.params = params or GradMatchParams()

    def setup(self, ctx: Context) -> None:
        if self.params.valid and ctx.val is None:
            raise InvalidInputError("gradmatch with valid=true needs a validation split; pass --val-fraction 0.1")
        super().setup(ctx)

    def _target(self, grads: Tensor, members: Tensor, k: int) -> Tensor:
        """The gradient sum to match, scaled so that unit weights on k atoms are the natural scale."""
        ctx = self.context
        if self.params.valid and ctx.val is not None:
            val_mask = torch.isin(ctx.val.targets, ctx.train.targets[members].unique())
            val_grads = _last_layer_grads(ctx, ctx.val.inputs[val_mask], ctx.val.targets[val_mask])
            return val_grads.mean(0) * k
        return grads.mean(0) * k

    def _per_class(self, k: int) -> tuple[Tensor, Tensor]:
        ctx, p = self.context, self.params
        targets = ctx.train.targets.cpu()
        classes = torch.unique(targets)
        quotas = class_quotas(torch.stack([(targets == c).sum() for c in classes]), k, proportional=True)
        indices, weights = [], []
        for c, quota in zip(classes.tolist(), quotas.tolist(), strict=True):
            if quota == 0:
                continue
            members = torch.nonzero(targets == c).squeeze(1)
            grads = _last_layer_grads(ctx, *ctx.train[members])
            result = nonnegative_omp(grads, self._target(grads, members, quota), quota, lam=p.lam)
            keep = result.weights > 0
            indices.append(members[result.indices.cpu()[keep.cpu()]])
            weights.append(result.weights[keep].cpu())
        return torch.cat(indices), torch.cat(weights)

    def _per_batch(self, k: int) -> tuple[Tensor, Tensor]:
        ctx, p = self.context, self.params
        size = ctx.batch_size
        order = torch.randperm(len(ctx.train), generator=self.generator)
        usable = len(order) // size * size
        batches = order[:usable].view(-1, size)
        out = forward_in_batches(ctx.model, ctx.train.inputs[order[:usable].to(ctx.train.device)], with_features=True)
        ctx.log.count_forward(usable)
        assert out.features is not None
        e = logit_gradients(out.logits, ctx.train.targets[order[:usable].to(ctx.train.device)]).view(-1, size,
                                                                                                     out.logits.shape[1])
        h = out.features.float().view(-1, size, out.features.shape[1])
        atoms = torch.cat([e.mean(1), torch.bmm(e.transpose(1, 2), h).flatten(1) / size], dim=1)  # mean gradients
        n_batches = max(1, round(k / size))
        result = nonnegative_omp(atoms, self._batch_target(atoms, n_batches), n_batches, lam=p.lam)
        keep = result.weights > 0
        chosen = result.indices.cpu()[keep.cpu()]
        indices = batches[chosen].flatten()
        weights = result.weights[keep].cpu().repeat_interleave(size)
        return indices[:k], weights[:k]

    def _batch_target(self, atoms: Tensor, n_batches: int) -> Tensor:
        ctx = self.context
        if self.params.valid and ctx.val is not None:
            val_grads = _last_layer_grads(ctx, ctx.val.inputs, ctx.val.targets)
            return val_grads.mean(0) * n_batches
        return atoms.mean(0) * n_batches

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
