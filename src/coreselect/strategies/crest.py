"""CREST (Yang, Kang, Mirzasoleiman, ICML 2023): mini-batch coresets from random subsets, re-selected
when a quadratic model of the loss stops predicting it, with optional dropping of learned examples.

Per region: P class-stratified random subsets of the pool, one weighted mini-batch coreset of ~m from each
(per-class facility location on logit gradients), and a quadratic model F(δ) = L₀ + ĝᵀδ + ½ δᵀ diag(ĥ) δ
fitted on the coresets (Hutchinson Hessian diagonal, exponential averages as in the official code).
Every T₁ steps the loss on the region's random subsets is compared with F(δ); a relative error above τ
starts a new region. T₁ = ⌈h·‖H₀‖/‖H_t‖⌉ and P = min(b·T₁, steps per epoch).

Fixes over the official code (switchable where they change results): the check forwards only the random
subsets (``full_set_check`` restores the whole-set forward); δ is the actual parameter displacement since
the region began, so momentum and weight decay count (the official trainer drops momentum and tracks
−lr·∇ only); no zero-learning-rate uniform first epoch (``uniform_first_epoch`` restores one). The
quadratic model is fitted in train mode with BatchNorm running statistics restored afterwards.

Options beyond the official code, off by default: ``anchor_on_subsets`` sets L₀ to the very loss the check
measures (eval mode, unweighted, on the checked points) instead of the weighted coreset loss; ``check_size``
checks a fixed random sample of the subsets' points, cutting the per-check forward; ``check_with=steps``
checks F against the weighted losses the training steps since the last check computed anyway (F models the
weighted coreset loss in train mode, which is what those steps measured), so a check forwards nothing;
``grow_interval`` doubles T₁ each time the model holds (until the next region recomputes it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor

from coreselect.signals import forward_in_batches, gradient_and_hessian_diagonal, logit_gradients, per_example_losses
from coreselect.strategies.base import SeededStrategy
from coreselect.strategies.minibatch_coresets import SubsetParams, minibatch_coresets, stratified_subsets
from coreselect.strategies.protocol import Batch, Context, StepOutput
from coreselect.strategies.registry import register

COMPONENTS = ("select", "approximate", "check")


class CrestParams(SubsetParams):
    """CREST's settings; defaults follow the official code's ``utils/arguments.py``."""

    num_coresets: int = Field(5, ge=1, description="P, mini-batch coresets of the first region")
    check_interval: int = Field(1, ge=1, description="T₁ of the first region, in steps")
    batch_num_mul: float = Field(5.0, gt=0, description="b: P = min(b·T₁, steps per epoch)")
    interval_mul: float = Field(1.0, gt=0, description="h: T₁ = ⌈h·‖H₀‖/‖H_t‖⌉")
    check_thresh: float = Field(0.1, gt=0, description="τ: re-select when |L − F(δ)| > τ·L")
    approx_with_coreset: bool = Field(True, description="fit F on the weighted coresets (else on the subsets)")
    anchor_on_subsets: bool = Field(False, description="L₀ = the checked loss (eval mode, unweighted, random "
                                    "subsets) at δ = 0 (default: the official weighted train-mode coreset loss)")
    beta1: float = Field(0.9, ge=0, lt=1, description="EMA of the gradient")
    beta2: float = Field(0.999, ge=0, lt=1, description="EMA of the squared Hessian diagonal")
    hessian_eps: float = Field(1e-4, ge=0)
    drop_learned: bool = Field(False, description="drop examples whose loss stayed below drop_thresh")
    drop_thresh: float = Field(0.1, gt=0, description="α")
    drop_interval: int = Field(20, ge=1, description="T₂, compressed epochs between drops")
    watch_interval: int = Field(5, ge=1, description="loss history window, in compressed epochs")
    min_pool_fraction: float = Field(0.8, gt=0, le=1, description="never shrink the pool below this share")
    check_size: int | None = Field(None, ge=1, description="check on this many of the region's random-subset "
                                   "points, drawn once per region (default: all of them)")
    check_with: Literal["subsets", "steps"] = Field("subsets", description="subsets (official): forward the "
                                                    "region's random subsets; steps: the training steps' own "
                                                    "weighted losses since the last check, no forward")
    grow_interval: bool = Field(False, description="double T₁ each time the quadratic model holds")
    fit_batches: int | None = Field(None, ge=1, description="fit the quadratic model on this many of the region's "
                                    "mini-batches, drawn at random (default: all of them, as the official code)")
    full_set_check: bool = Field(False, description="official: forward the whole training set at each check")
    uniform_first_epoch: bool = Field(False, description="official: one epoch of uniform batches first")


def _flat(tensors: list[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


@dataclass(frozen=True)
class QuadraticModel:
    """F(w) = L₀ + ĝᵀδ + ½ δᵀ diag(ĥ) δ with δ = w − anchor (all flattened)."""

    base_loss: float
    grad: Tensor
    hess: Tensor
    anchor: Tensor

    def predict(self, params: Tensor) -> float:
        delta = params - self.anchor
        return float(self.base_loss + self.grad @ delta + 0.5 * (self.hess * delta * delta).sum())


@register("crest", family="adaptive", params=CrestParams,
          summary="mini-batch coresets from random subsets, re-selected when a quadratic loss model fails")
class Crest(SeededStrategy):
    """See the module docstring; state survives ``state_dict``/``load_state_dict`` exactly."""

    name = "crest"

    def __init__(self, params: CrestParams | None = None) -> None:
        super().__init__()
        self.params = params or CrestParams()
        self.seconds = dict.fromkeys(COMPONENTS, 0.0)

    # -- set-up and state ------------------------------------------------------------------------
    def setup(self, ctx: Context) -> None:
        super().setup(ctx)
        n, m = len(ctx.train), ctx.batch_size
        self.steps_per_epoch = math.ceil(ctx.budget.epoch_examples / m)
        self.pool = torch.ones(n, dtype=torch.bool)
        self.min_pool = math.ceil(self.params.min_pool_fraction * n)
        self.loss_table = torch.full((self.params.watch_interval, n), -1.0)
        self.step = 0
        self.reset_step = self.steps_per_epoch if self.params.uniform_first_epoch else 0
        self.interval, self.num_coresets = self.params.check_interval, self.params.num_coresets
        self.h0_norm: float | None = None
        self.updates = self.checks = 0
        self.last_drop_epoch = 0
        self.order = torch.zeros(0, dtype=torch.long)
        self.cursor = 0
        self.coreset = self.weights = self.subsets = self.checked = torch.zeros(0, dtype=torch.long)
        self.quadratic = QuadraticModel(0.0, torch.zeros(0), torch.zeros(0), torch.zeros(0))
        params = self._params()
        self.ema_grad = [torch.zeros_like(p) for p in params]
        self.ema_hess = [torch.zeros_like(p) for p in params]
        self.ema_count = 0
        self.window = [0.0, 0.0, 0]  # check_with=steps: predicted and actual loss sums since the last check, count
        self._prediction: float | None = None  # F(δ) at the parameters of the batch just yielded

    def _params(self) -> list[Tensor]:
        return [p for p in self.context.model.parameters() if p.requires_grad]

    _STATE = ("step", "reset_step", "interval", "num_coresets", "h0_norm", "updates", "checks", "last_drop_epoch",
              "order", "cursor", "coreset", "weights", "subsets", "checked", "ema_grad", "ema_hess", "ema_count",
              "pool", "loss_table", "seconds", "window")

    def state_dict(self) -> dict[str, Any]:
        q = self.quadratic
        return {"generator": self.generator.get_state(), **{k: getattr(self, k) for k in self._STATE},
                "quadratic": {"base_loss": q.base_loss, "grad": q.grad, "hess": q.hess, "anchor": q.anchor}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        for key in self._STATE:
            if key in state:  # a key added since the checkpoint was written keeps its fresh value
                setattr(self, key, state[key])
        self.quadratic = QuadraticModel(**state["quadratic"])

    def metrics(self) -> dict[str, float]:
        """Coreset updates, seconds per component, and pool size so far (added to each evaluation)."""
        return {"coreset_updates": float(self.updates), "checks": float(self.checks),
                "pool_size": float(int(self.pool.sum())),
                "check_interval": float(self.interval), "num_coresets": float(self.num_coresets),
                **{f"{k}_s": v for k, v in self.seconds.items()}}

    # -- the batch stream ------------------------------------------------------------------------
    def batches(self) -> Iterator[Batch]:
        ctx = self.context
        m = ctx.batch_size
        while True:
            if self.step < self.reset_step:  # the official uniform first epoch
                yield Batch(torch.randint(len(ctx.train), (m,), generator=self.generator))
                continue
            if self.step == self.reset_step or len(self.coreset) == 0:
                self._new_region()
            elif (self.step - self.reset_step) % self.interval == 0 and self._model_failed():
                self.reset_step = self.step
                self._new_region()
            if self.cursor >= len(self.order):  # reshuffle the region's coresets and cycle
                self.order, self.cursor = torch.randperm(len(self.coreset), generator=self.generator), 0
            positions = self.order[self.cursor : self.cursor + m]
            self.cursor += len(positions)
            if self.params.check_with == "steps":
                start = time.perf_counter()
                self._prediction = self.predicted_loss()  # at the parameters the step will see
                self.seconds["check"] += time.perf_counter() - start
            yield Batch(self.coreset[positions], self.weights[positions])

    def planned(self) -> list[Tensor]:
        """The rest of the region's shuffled coreset batches (PlansBatches; a new region drops them)."""
        if self.step < self.reset_step or len(self.coreset) == 0:
            return []
        m = self.context.batch_size
        return [self.coreset[self.order[c : c + m]] for c in range(self.cursor, len(self.order), m)]

    def observe(self, batch: Batch, out: StepOutput) -> None:
        self.step += 1
        if self._prediction is not None:  # check_with=steps: the step's weighted loss, computed anyway
            self.window[0] += self._prediction
            self.window[1] += float(batch.weighted_mean(out.losses))
            self.window[2] += 1
            self._prediction = None

    # -- selection -------------------------------------------------------------------------------
    def _new_region(self) -> None:
        ctx = self.context
        start = time.perf_counter()
        self._maybe_drop()
        pool = torch.nonzero(self.pool).squeeze(1)
        subsets = stratified_subsets(pool, ctx.train.targets, self.params.subset_size(len(pool), ctx.batch_size),
                                     self.num_coresets, self.generator)
        union = torch.cat(subsets)
        out = forward_in_batches(ctx.model, ctx.train, indices=union)
        ctx.log.count_forward(len(union))
        targets = ctx.train.targets[union.to(ctx.train.device)]
        proxies = logit_gradients(out.logits, targets).cpu()
        losses = per_example_losses(out.logits, targets).cpu()
        self._record_losses(union, losses)
        self.coreset, self.weights = minibatch_coresets(proxies, subsets, targets, ctx.batch_size)
        self.subsets = union
        picked = torch.arange(len(union))
        if self.params.check_size is not None and self.params.check_size < len(union):
            picked = torch.randperm(len(union), generator=self.generator)[: self.params.check_size]
        self.checked = union[picked]
        self.order, self.cursor = torch.randperm(len(self.coreset), generator=self.generator), 0
        self.window = [0.0, 0.0, 0]
        ctx.log.record(self.coreset, self.weights)
        self.updates += 1
        self.seconds["select"] += time.perf_counter() - start
        start = time.perf_counter()
        self._fit_quadratic(base_loss=float(losses[picked].mean()) if self.params.anchor_on_subsets else None)
        self.seconds["approximate"] += time.perf_counter() - start

    def _fit_quadratic(self, base_loss: float | None = None) -> None:
        """L₀, ĝ, ĥ of the weighted coreset loss (or of the subsets' loss), in batches of m in train mode;
        Hutchinson diagonal with the official code's exponential averages, never reset between regions.
        ``base_loss`` replaces the fitted L₀ (the anchor of ``anchor_on_subsets``)."""
        ctx, p = self.context, self.params
        points = self.coreset if p.approx_with_coreset else self.subsets
        point_weights = self.weights if p.approx_with_coreset else torch.ones(len(points))
        model, params = ctx.model, self._params()
        buffers = {k: v.clone() for k, v in model.named_buffers()}
        was_training = model.training
        model.train()
        m = ctx.batch_size
        grad_sum = [torch.zeros_like(q) for q in params]
        hess_sum = [torch.zeros_like(q) for q in params]
        loss_sum, norms = 0.0, []
        starts = list(range(0, len(points), m))
        if p.fit_batches is not None and p.fit_batches < len(starts):  # a random few: the same mean, noisier
            drawn = torch.randperm(len(starts), generator=self.generator)[: p.fit_batches].sort().values
            starts = [starts[i] for i in drawn.tolist()]
        for start in starts:
            idx = points[start : start + m]
            x, y = ctx.train[idx]
            loss = Batch(idx, point_weights[start : start + m]).weighted_mean(per_example_losses(model(x), y))
            grads, diag = gradient_and_hessian_diagonal(loss, params, generator=self.generator)
            self.ema_count += 1
            bias1, bias2 = 1 - p.beta1 ** self.ema_count, 1 - p.beta2 ** self.ema_count
            batch_hess = []
            for i, (g, d) in enumerate(zip(grads, diag, strict=True)):
                self.ema_grad[i].mul_(p.beta1).add_(g, alpha=1 - p.beta1)
                self.ema_hess[i].mul_(p.beta2).addcmul_(d, d, value=1 - p.beta2)
                grad_sum[i].add_(self.ema_grad[i] / bias1, alpha=len(idx))
                h = (self.ema_hess[i] / bias2).sqrt_().add_(p.hessian_eps)
                hess_sum[i].add_(h, alpha=len(idx))
                batch_hess.append(h)
            norms.append(float(_flat(batch_hess).norm()))
            loss_sum += float(loss.detach()) * len(idx)
        model.train(was_training)
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
        total = sum(len(points[start : start + m]) for start in starts)
        base = loss_sum / total if base_loss is None else base_loss
        self.quadratic = QuadraticModel(base, _flat(grad_sum) / total, _flat(hess_sum) / total,
                                        _flat([q.detach() for q in params]).clone())
        h_norm = sum(norms) / len(norms)
        if self.h0_norm is None:
            self.h0_norm = h_norm
        else:
            self.interval = max(1, math.ceil(p.interval_mul * self.h0_norm / h_norm))
            self.num_coresets = max(1, min(math.ceil(p.batch_num_mul * self.interval), self.steps_per_epoch))

    def predicted_loss(self) -> float:
        """F(δ) at the current parameters."""
        return self.quadratic.predict(_flat([q.detach() for q in self._params()]))

    def _model_failed(self) -> bool:
        """The loss on the region's random subsets (or ``check_size`` of their points; or the steps' own losses
        since the last check) against F(δ): True when the relative error exceeds τ."""
        ctx = self.context
        start = time.perf_counter()
        if self.params.check_with == "steps":
            predicted_sum, actual_sum, count = self.window
            self.window = [0.0, 0.0, 0]
            failed = count > 0 and abs(actual_sum - predicted_sum) > self.params.check_thresh * actual_sum
            return self._checked(failed, start)
        checked = self.checked.to(ctx.train.device)
        if self.params.full_set_check:
            logits = forward_in_batches(ctx.model, ctx.train).logits[checked]
            ctx.log.count_forward(len(ctx.train))
        else:
            logits = forward_in_batches(ctx.model, ctx.train, indices=checked).logits
            ctx.log.count_forward(len(checked))
        actual = float(per_example_losses(logits, ctx.train.targets[checked]).mean())
        return self._checked(abs(actual - self.predicted_loss()) > self.params.check_thresh * actual, start)

    def _checked(self, failed: bool, start: float) -> bool:
        """Count a check that began at ``start``; a model that held doubles T₁ under ``grow_interval``."""
        self.checks += 1
        if not failed and self.params.grow_interval:
            self.interval = min(2 * self.interval, self.steps_per_epoch)
        self.seconds["check"] += time.perf_counter() - start
        return failed

    # -- dropping learned examples -----------------------------------------------------------------
    def _record_losses(self, indices: Tensor, losses: Tensor) -> None:
        if self.params.drop_learned:
            slot = (self.step // self.steps_per_epoch) % self.params.watch_interval
            self.loss_table[slot, indices] = losses.float()

    def _maybe_drop(self) -> None:
        p = self.params
        epoch = self.step // self.steps_per_epoch
        if not p.drop_learned or epoch - self.last_drop_epoch < p.drop_interval:
            return
        self.last_drop_epoch = epoch
        subset = p.subset_size(int(self.pool.sum()), self.context.batch_size)
        self.pool = drop_learned(self.pool, self.loss_table, self.context.train.targets.cpu(), p.drop_thresh,
                                 minimum_per_class=math.ceil(subset / self.context.train.num_classes),
                                 minimum_pool=self.min_pool)
        self.loss_table.fill_(-1.0)


def drop_learned(pool: Tensor, loss_table: Tensor, targets: Tensor, threshold: float, *, minimum_per_class: int,
                 minimum_pool: int) -> Tensor:
    """The pool without learned examples: those evaluated in the window whose every recorded loss is ≤
    ``threshold``. A class keeps all its examples if fewer than ``minimum_per_class`` would remain; nothing
    is dropped if the pool would fall to ``minimum_pool`` or below (the official code's safeguards)."""
    evaluated = (loss_table >= 0).any(0)
    hard = (loss_table > threshold).any(0)
    keep = pool & (hard | ~evaluated)
    for c in torch.unique(targets[pool]):
        in_class = targets == c
        if int((keep & in_class).sum()) < minimum_per_class:
            keep[in_class] = pool[in_class]
    return keep if int(keep.sum()) > minimum_pool else pool
