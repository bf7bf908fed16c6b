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
``batch_intercepts`` (with ``check_with=steps``) compares each step's loss with F shifted to that batch's own loss
at the region's start, which the fit computed anyway, so that batch-to-batch differences in loss are not read as
F failing; ``grow_interval`` doubles T₁ each time the model holds (until the next region recomputes it);
``curvature=diagonal`` gives F the exponential average of the Hutchinson estimates themselves, unbiased for
diag(H), where the official ĥ = √(average of their squares) estimates each Hessian row's norm, an upper bound
of |H_ii| that makes F rise away from the anchor faster than the loss does (T₁ still comes from the latter);
``fit_batches`` fits F on a few of the region's batches; ``hessian_every`` draws the Hutchinson estimate in every
k-th region's fit only (ĥ averages all draws so far), the other fits computing the gradient alone;
``fit_from_steps`` (with ``batch_intercepts``) fits nothing in a region without a draw: the region's first batch is
one whole mini-batch coreset (the batch a one-batch fit fits) and ĝ folds in the gradient that step back-propagated
at the anchor, which a loop that hands step gradients (the Trainer) gives to a strategy declaring
``NeedsStepGradient``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor

from coreselect.errors import InvalidInputError
from coreselect.signals import gradient_and_hessian_diagonal, logit_gradients, per_example_losses
from coreselect.strategies.base import SeededStrategy
from coreselect.strategies.minibatch_coresets import (
    SubsetParams,
    class_members,
    minibatch_coresets,
    stratified_subsets,
)
from coreselect.strategies.passes import ShuffledPass
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
    batch_intercepts: bool = Field(False, description="check_with=steps: compare each step's loss with F shifted "
                                   "to that batch's own loss at the region's start (its examples' losses in the "
                                   "fit) instead of the mean over the region's coresets, so that the check "
                                   "measures F's error rather than how the batches differ")
    curvature: Literal["rms", "diagonal"] = Field("rms", description="ĥ of F: rms (official) √(average of the "
                                                  "squared Hutchinson estimates), each Hessian row's norm in "
                                                  "expectation; diagonal: their average, unbiased for diag(H)")
    fit_batches: int | None = Field(None, ge=1, description="fit the quadratic model on this many of the region's "
                                    "mini-batches, drawn at random (default: all of them, as the official code); "
                                    "batch_intercepts takes the other batches' losses from the selection forward")
    hessian_every: int = Field(1, ge=1, description="draw the Hutchinson estimate of the Hessian diagonal in every "
                               "k-th region's fit only; ĥ is their exponential average (β₂, near a plain mean of all "
                               "draws so far), and the other fits compute the gradient alone")
    fit_from_steps: bool = Field(False, description="with batch_intercepts: in a region without a Hessian draw, the "
                                 "first batch is one whole mini-batch coreset and ĝ folds in the gradient that step "
                                 "back-propagated at the anchor (computed anyway) instead of fitting F on fit_batches "
                                 "of its own; needs a loop that hands step gradients (the Trainer; else F is fitted)")
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
        return self.base_loss + float(torch.dot(torch.addcmul(self.grad, self.hess, delta, value=0.5), delta))


def _no_indices() -> Tensor:
    return torch.zeros(0, dtype=torch.long)


@dataclass
class CrestState:
    """What a CREST run carries from step to step; checkpointed whole, resumed exactly."""

    pool: Tensor  # bool over the training set: examples not dropped as learned
    loss_table: Tensor  # watch_interval × n losses recorded by region forwards (−1: none)
    reset_step: int  # the step the current region began
    interval: int  # T₁, steps between checks
    num_coresets: int  # P, mini-batch coresets of the next region
    step: int = 0  # steps observed
    h0_norm: float | None = None  # ‖H₀‖ of the first region's fit
    updates: int = 0  # regions begun
    checks: int = 0
    last_drop_epoch: int = 0
    coreset: Tensor = field(default_factory=_no_indices)  # the region's P coresets, concatenated
    weights: Tensor = field(default_factory=_no_indices)  # their weights (mean 1)
    subsets: Tensor = field(default_factory=_no_indices)  # the region's random subsets, concatenated
    checked: Tensor = field(default_factory=_no_indices)  # the points a check forwards
    intercepts: Tensor = field(default_factory=lambda: torch.zeros(0))  # per coreset point: its loss in the fit
    batches: ShuffledPass = field(default_factory=ShuffledPass)  # over the coreset, cycled within the region
    quadratic: QuadraticModel = field(default_factory=lambda: QuadraticModel(0.0, *(torch.zeros(0),) * 3))
    ema_grad: list[Tensor] = field(default_factory=list)  # exponential averages of the fit, kept across regions
    ema_hess: list[Tensor] = field(default_factory=list)
    ema_diag: list[Tensor] = field(default_factory=list)  # curvature=diagonal: the estimates' own average
    ema_count: int = 0  # fitted batches (the gradient's average)
    hess_count: int = 0  # Hutchinson draws (the curvature's averages)
    awaiting_gradient: bool = False  # fit_from_steps: ĝ of this region waits for its first step's gradient
    window: list[float] = field(default_factory=lambda: [0.0, 0.0, 0])  # check_with=steps: predicted and actual
    # loss sums since the last check, and their count
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COMPONENTS, 0.0))

    def state_dict(self) -> dict[str, Any]:
        saved = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("batches", "quadratic")}
        q = self.quadratic
        return {**saved, **self.batches.state_dict(),
                "quadratic": {"base_loss": q.base_loss, "grad": q.grad, "hess": q.hess, "anchor": q.anchor}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for f in fields(self):
            if f.name in state and f.name not in ("batches", "quadratic"):  # a field added since the checkpoint
                setattr(self, f.name, state[f.name])  # was written keeps its fresh value
        if "hess_count" not in state:  # written when every fitted batch drew the Hessian diagonal
            self.hess_count = self.ema_count
        self.batches.load_state_dict(state)
        self.quadratic = QuadraticModel(**state["quadratic"])


@register("crest", family="adaptive", params=CrestParams,
          summary="mini-batch coresets from random subsets, re-selected when a quadratic loss model fails")
class Crest(SeededStrategy):
    """See the module docstring; state survives ``state_dict``/``load_state_dict`` exactly."""

    params: CrestParams

    def __init__(self, params: CrestParams | None = None) -> None:
        super().__init__(params)
        self.state = CrestState(torch.ones(0, dtype=torch.bool), torch.zeros(0, 0), 0, 1, 1)
        self._prediction: float | None = None  # F(δ) at the parameters of the batch just yielded (not state)
        self._trainable: list[Tensor] = []
        self._members: list[Tensor] | None = None  # the pool's indices by class, until the pool changes

    # -- set-up and state ------------------------------------------------------------------------
    def setup(self, ctx: Context) -> None:
        super().setup(ctx)
        n, m, p = len(ctx.train), ctx.batch_size, self.params
        if p.batch_intercepts and (p.check_with != "steps" or not p.approx_with_coreset):
            raise InvalidInputError("crest: batch_intercepts shifts the steps' check to each coreset batch's own "
                                    "loss; it needs check_with=steps and approx_with_coreset=true")
        if p.fit_from_steps and not p.batch_intercepts:
            raise InvalidInputError("crest: fit_from_steps leaves F's intercept to each batch's own loss at the "
                                    "region's start (the first step's loss is known only after its prediction); it "
                                    "needs batch_intercepts=true")
        self.steps_per_epoch = math.ceil(ctx.budget.epoch_examples / m)
        self.min_pool = math.ceil(p.min_pool_fraction * n)
        self._trainable = [q for q in ctx.model.parameters() if q.requires_grad]  # F's coordinates, read each step
        weights = self._params()
        self.state = CrestState(
            pool=torch.ones(n, dtype=torch.bool), loss_table=torch.full((p.watch_interval, n), -1.0),
            reset_step=self.steps_per_epoch if p.uniform_first_epoch else 0, interval=p.check_interval,
            num_coresets=p.num_coresets, ema_grad=[torch.zeros_like(w) for w in weights],
            ema_hess=[torch.zeros_like(w) for w in weights],
            ema_diag=[torch.zeros_like(w) for w in weights] if p.curvature == "diagonal" else [])
        self._prediction, self._members = None, None

    def _params(self) -> list[Tensor]:
        return self._trainable

    @property
    def needs_step_gradient(self) -> bool:
        """NeedsStepGradient: the first step of a region whose ĝ waits for it (``fit_from_steps``)."""
        return self.state.awaiting_gradient

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), **self.state.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.state.load_state_dict(state)
        self._members = None

    def metrics(self) -> dict[str, float]:
        """Coreset updates, seconds per component, and pool size so far (added to each evaluation)."""
        st = self.state
        return {"coreset_updates": float(st.updates), "checks": float(st.checks),
                "pool_size": float(int(st.pool.sum())),
                "check_interval": float(st.interval), "num_coresets": float(st.num_coresets),
                **{f"{k}_s": v for k, v in st.seconds.items()}}

    # -- the batch stream ------------------------------------------------------------------------
    def batches(self) -> Iterator[Batch]:
        ctx, st = self.context, self.state
        m = ctx.batch_size
        while True:
            if st.step < st.reset_step:  # the official uniform first epoch
                yield Batch(torch.randint(len(ctx.train), (m,), generator=self.generator))
                continue
            if st.step == st.reset_step or len(st.coreset) == 0:
                self._new_region()
            elif (st.step - st.reset_step) % st.interval == 0 and self._model_failed():
                st.reset_step = st.step
                self._new_region()
            if st.batches.remaining <= 0:  # reshuffle the region's coresets and cycle
                st.batches.shuffle(len(st.coreset), self.generator)
            positions = st.batches.take(m)
            if self.params.check_with == "steps":
                start = time.perf_counter()
                self._prediction = self.predicted_loss(positions)  # at the parameters the step will see
                st.seconds["check"] += time.perf_counter() - start
            yield Batch(st.coreset[positions], st.weights[positions])

    def planned(self) -> list[Tensor]:
        """The rest of the region's shuffled coreset batches (PlansBatches; a new region drops them)."""
        st = self.state
        if st.step < st.reset_step or len(st.coreset) == 0:
            return []
        return [st.coreset[positions] for positions in st.batches.ahead(self.context.batch_size)]

    def observe(self, batch: Batch, out: StepOutput) -> None:
        self.state.step += 1
        if self.state.awaiting_gradient:
            if out.gradient is None:
                raise InvalidInputError("crest: fit_from_steps asked for the step's gradient and the loop handed none; "
                                        "a loop that hands no gradients must leave Context.hands_step_gradients false")
            start = time.perf_counter()
            self._fit_from_step(float(batch.weighted_mean(out.losses)), out.gradient)
            self.state.seconds["approximate"] += time.perf_counter() - start
        if self._prediction is not None:  # check_with=steps: the step's weighted loss, computed anyway
            self.state.window[0] += self._prediction
            self.state.window[1] += float(batch.weighted_mean(out.losses))
            self.state.window[2] += 1
            self._prediction = None

    # -- selection -------------------------------------------------------------------------------
    def _new_region(self) -> None:
        ctx, st = self.context, self.state
        start = time.perf_counter()
        self._maybe_drop()
        if self._members is None:
            self._members = class_members(torch.nonzero(st.pool).squeeze(1), ctx.train.targets)
        pooled = sum(len(g) for g in self._members)
        subsets = stratified_subsets(self._members, self.params.subset_size(pooled, ctx.batch_size), st.num_coresets,
                                     self.generator)
        union = torch.cat(subsets)
        out = ctx.forward(ctx.train, indices=union)
        ctx.log.count_forward(len(union))
        targets = ctx.train.targets[union.to(ctx.train.device)]
        proxies = logit_gradients(out.logits, targets).cpu()
        losses = per_example_losses(out.logits, targets).cpu()
        self._record_losses(union, losses)
        st.coreset, st.weights = minibatch_coresets(proxies, subsets, targets, ctx.batch_size)
        st.subsets = union
        picked = torch.arange(len(union))
        if self.params.check_size is not None and self.params.check_size < len(union):
            picked = torch.randperm(len(union), generator=self.generator)[: self.params.check_size]
        st.checked = union[picked]
        st.batches.shuffle(len(st.coreset), self.generator)
        st.window = [0.0, 0.0, 0]
        ctx.log.record(st.coreset, st.weights)
        st.updates += 1
        st.seconds["select"] += time.perf_counter() - start
        start = time.perf_counter()
        known: Tensor | None = None
        if self.params.fit_batches is not None or self.params.fit_from_steps:  # each forwarded example's loss at
            known = torch.full((len(ctx.train),), math.nan)  # the anchor (eval mode): the intercepts of batches no
            known[union] = losses.float()  # fit forwards
        if self._draws_hessian() or not (self.params.fit_from_steps and ctx.hands_step_gradients):
            self._fit_quadratic(base_loss=float(losses[picked].mean()) if self.params.anchor_on_subsets else None,
                                known_losses=known)
        else:  # F waits for the first step's gradient at the anchor; each point's intercept is its loss forwarded
            st.intercepts = known[st.coreset]  # at the anchor (every coreset point is in the subsets)
            self._first_batch_one_coreset()
            anchor = _flat([q.detach() for q in self._params()]).clone()  # F(anchor) = L₀ whatever ĝ and ĥ are
            st.quadratic = QuadraticModel(0.0, torch.zeros_like(anchor), torch.zeros_like(anchor), anchor)
            st.awaiting_gradient = True
        st.seconds["approximate"] += time.perf_counter() - start

    def _first_batch_one_coreset(self) -> None:
        """Make the region's first batch one whole mini-batch coreset drawn at random (the batch the fit would have
        fitted, so that ĝ from the first step is the same estimate), the rest of the pass in its shuffled order."""
        st, m = self.state, self.context.batch_size
        count = len(st.coreset) // m
        if count == 0:
            return
        first = int(torch.randint(count, (1,), generator=self.generator)) * m
        st.batches.lead_with(torch.arange(first, first + m))

    def _draws_hessian(self) -> bool:
        """Whether the region just begun draws the Hutchinson estimate (every ``hessian_every``-th, the first too)."""
        return (self.state.updates - 1) % self.params.hessian_every == 0

    def _fold(self, grads: list[Tensor], diag: list[Tensor] | None) -> tuple[list[Tensor], list[Tensor], float]:
        """Fold one batch's gradient (and Hutchinson draw, if any) into the exponential averages, as the official
        code does; return the bias-corrected gradient and curvature of F and ‖ĥ‖ (the official estimate, for T₁)."""
        p, st = self.params, self.state
        st.ema_count += 1
        st.hess_count += int(diag is not None)
        bias1, bias2 = 1 - p.beta1 ** st.ema_count, 1 - p.beta2 ** st.hess_count
        grad, curvature, official = [], [], []
        for i, g in enumerate(grads):
            st.ema_grad[i].mul_(p.beta1).add_(g, alpha=1 - p.beta1)
            if diag is not None:
                st.ema_hess[i].mul_(p.beta2).addcmul_(diag[i], diag[i], value=1 - p.beta2)
                if p.curvature == "diagonal":
                    st.ema_diag[i].mul_(p.beta2).add_(diag[i], alpha=1 - p.beta2)
            grad.append(st.ema_grad[i] / bias1)
            h = (st.ema_hess[i] / bias2).sqrt_().add_(p.hessian_eps)
            curvature.append(st.ema_diag[i] / bias2 if p.curvature == "diagonal" else h)
            official.append(h)
        return grad, curvature, float(_flat(official).norm())

    def _schedule(self, h_norm: float) -> None:
        """T₁ = ⌈h·‖H₀‖/‖H_t‖⌉ and P = min(b·T₁, steps per epoch) from this region's ‖ĥ‖ (the first sets ‖H₀‖)."""
        p, st = self.params, self.state
        if st.h0_norm is None:
            st.h0_norm = h_norm
        else:
            st.interval = max(1, math.ceil(p.interval_mul * st.h0_norm / h_norm))
            st.num_coresets = max(1, min(math.ceil(p.batch_num_mul * st.interval), self.steps_per_epoch))

    def _fit_from_step(self, loss: float, gradient: list[Tensor]) -> None:
        """``fit_from_steps``: F from the gradient the region's first step back-propagated at the anchor."""
        st = self.state
        grad, curvature, h_norm = self._fold([g.detach().to(st.ema_grad[i].device) for i, g in enumerate(gradient)],
                                             None)
        st.quadratic = QuadraticModel(loss, _flat(grad), _flat(curvature), st.quadratic.anchor)
        st.awaiting_gradient = False
        self._schedule(h_norm)

    def _fit_quadratic(self, base_loss: float | None = None, known_losses: Tensor | None = None) -> None:
        """L₀, ĝ, ĥ of the weighted coreset loss (or of the subsets' loss), in batches of m in train mode;
        Hutchinson diagonal with the official code's exponential averages, never reset between regions.
        ``base_loss`` replaces the fitted L₀ (the anchor of ``anchor_on_subsets``); ``known_losses`` (per training
        example, NaN where unknown) gives the intercepts of points in batches that ``fit_batches`` leaves out."""
        ctx, p, st = self.context, self.params, self.state
        points = st.coreset if p.approx_with_coreset else st.subsets
        point_weights = st.weights if p.approx_with_coreset else torch.ones(len(points))
        model, params = ctx.model, self._params()
        buffers = {k: v.clone() for k, v in model.named_buffers()}
        was_training = model.training
        model.train()
        m = ctx.batch_size
        grad_sum = [torch.zeros_like(q) for q in params]
        hess_sum = [torch.zeros_like(q) for q in params]
        loss_sum, norms = 0.0, []
        intercepts = torch.full((len(points),), math.nan) if known_losses is None else known_losses[points].clone()
        draw_hessian = self._draws_hessian()
        starts = list(range(0, len(points), m))
        if p.fit_batches is not None and p.fit_batches < len(starts):  # a random few: the same mean, noisier
            drawn = torch.randperm(len(starts), generator=self.generator)[: p.fit_batches].sort().values
            starts = [starts[i] for i in drawn.tolist()]
        for start in starts:
            idx = points[start : start + m]
            x, y = ctx.train[idx]
            example_losses = per_example_losses(model(x), y)
            intercepts[start : start + m] = example_losses.detach().float().cpu()
            loss = Batch(idx, point_weights[start : start + m]).weighted_mean(example_losses)
            if draw_hessian:
                grads, diag = gradient_and_hessian_diagonal(loss, params, generator=self.generator)
            else:
                grads, diag = [g.detach() for g in torch.autograd.grad(loss, params)], None
            grad, curvature, h_norm = self._fold(grads, diag)
            for i in range(len(params)):
                grad_sum[i].add_(grad[i], alpha=len(idx))
                hess_sum[i].add_(curvature[i], alpha=len(idx))
            norms.append(h_norm)
            loss_sum += float(loss.detach()) * len(idx)
        model.train(was_training)
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
        total = sum(len(points[start : start + m]) for start in starts)
        fitted_loss = loss_sum / total
        base = fitted_loss if base_loss is None else base_loss
        st.intercepts = intercepts.nan_to_num(fitted_loss)  # points of batches fit_batches left out: their losses
        # from the selection forward (eval mode; the same as train mode for a model without BatchNorm or dropout)
        st.quadratic = QuadraticModel(base, _flat(grad_sum) / total, _flat(hess_sum) / total,
                                      _flat([q.detach() for q in params]).clone())
        self._schedule(sum(norms) / len(norms))

    def predicted_loss(self, positions: Tensor | None = None) -> float:
        """F(δ) at the current parameters; with ``batch_intercepts`` and the ``positions`` of a batch of the
        region's coresets, F shifted from the region's mean loss to that batch's own loss at the region's start."""
        st = self.state
        value = st.quadratic.predict(_flat([q.detach() for q in self._params()]))
        if positions is not None and self.params.batch_intercepts:
            own = Batch(st.coreset[positions], st.weights[positions]).weighted_mean(st.intercepts[positions])
            value += float(own) - st.quadratic.base_loss
        return value

    def _model_failed(self) -> bool:
        """The loss on the region's random subsets (or ``check_size`` of their points; or the steps' own losses
        since the last check) against F(δ): True when the relative error exceeds τ."""
        ctx = self.context
        start = time.perf_counter()
        if self.params.check_with == "steps":
            predicted_sum, actual_sum, count = self.state.window
            self.state.window = [0.0, 0.0, 0]
            failed = count > 0 and abs(actual_sum - predicted_sum) > self.params.check_thresh * actual_sum
            return self._checked(failed, start)
        checked = self.state.checked.to(ctx.train.device)
        if self.params.full_set_check:
            logits = ctx.forward(ctx.train).logits[checked]
            ctx.log.count_forward(len(ctx.train))
        else:
            logits = ctx.forward(ctx.train, indices=checked).logits
            ctx.log.count_forward(len(checked))
        actual = float(per_example_losses(logits, ctx.train.targets[checked]).mean())
        return self._checked(abs(actual - self.predicted_loss()) > self.params.check_thresh * actual, start)

    def _checked(self, failed: bool, start: float) -> bool:
        """Count a check that began at ``start``; a model that held doubles T₁ under ``grow_interval``."""
        self.state.checks += 1
        if not failed and self.params.grow_interval:
            self.state.interval = min(2 * self.state.interval, self.steps_per_epoch)
        self.state.seconds["check"] += time.perf_counter() - start
        return failed

    # -- dropping learned examples -----------------------------------------------------------------
    def _record_losses(self, indices: Tensor, losses: Tensor) -> None:
        if self.params.drop_learned:
            slot = (self.state.step // self.steps_per_epoch) % self.params.watch_interval
            self.state.loss_table[slot, indices] = losses.float()

    def _maybe_drop(self) -> None:
        p, st = self.params, self.state
        epoch = st.step // self.steps_per_epoch
        if not p.drop_learned or epoch - st.last_drop_epoch < p.drop_interval:
            return
        st.last_drop_epoch = epoch
        subset = p.subset_size(int(st.pool.sum()), self.context.batch_size)
        self._members = None
        st.pool = drop_learned(st.pool, st.loss_table, self.context.train.targets.cpu(), p.drop_thresh,
                               minimum_per_class=math.ceil(subset / self.context.train.num_classes),
                               minimum_pool=self.min_pool)
        st.loss_table.fill_(-1.0)


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
