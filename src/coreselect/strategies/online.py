"""Online batch selection: every step draws n_B candidates from a shuffled pass over the training set,
scores them with one no-grad forward (eval mode), and trains on the best n_b (RHO-LOSS's protocol).
n_b is the run's batch size, as for every other strategy (batch size is a training setting, not a property
of a method); n_B = n_b / ``selection_ratio`` (0.1 by default: the papers' 32 of 320 is ``--batch-size 32``).
``reuse_within=K`` scores a candidate (loss or ‖p − y‖₂) by its latest known value when that is at most K steps
old, from the training-signal cache (its latest training forward) or from the strategy's own latest selection
forward of it (the "latest known loss" of Loshchilov & Hutter; ``reuse_selection_forwards=False``: the cache only),
and forwards only the others; ``unseen="first"`` forwards none, ranking a candidate without a known value first.

A strategy that keeps the top n_b of scores from known values and per-example constants (train-loss, grad-norm,
rho-loss under ``reuse_within``; irreducible-loss always) makes a pass's choices when the pass begins, in one
batched sort: a candidate's known value cannot change before its step, since an example is a candidate once a
pass and only candidates are trained or forwarded. Rows that need a forward at their step (a candidate never
seen, or known too long ago) are chosen at their step as before; a new pass's never-seen candidates, when fewer
than a step's (the examples the previous pass left over), are forwarded together when it begins.

uniform, train-loss (highest CE), grad-norm (highest ‖p − y‖₂), grad-norm-is (n_b drawn with replacement,
q ∝ ‖p − y‖₂, weights 1/(n_B·q) so that the batch gradient is unbiased), irreducible-loss (lowest loss
under a model trained on the holdout split), rho-loss (highest CE − irreducible loss). An epoch is one
pass over the candidate stream, so budget 0.1 with n_b/n_B = 0.1 gives as many passes as epochs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from coreselect.errors import InvalidInputError
from coreselect.signals import TrainingSignals, logit_gradients, per_example_losses
from coreselect.signals.laplace import target_log_probs
from coreselect.strategies.base import SeededStrategy
from coreselect.strategies.passes import ShuffledPass
from coreselect.strategies.protocol import Batch, StepOutput
from coreselect.strategies.proxy import ProxyRecord, ProxyRequest
from coreselect.strategies.registry import StrategyParams, register


class OnlineParams(StrategyParams):
    """How many candidates a step scores: n_B = batch size / ``selection_ratio`` (RHO-LOSS and Bayesian data
    selection use 32 of 320)."""

    selection_ratio: float = Field(0.1, gt=0, le=1, description="n_b / n_B: the run's batch size over the "
                                   "candidates scored per step")


class KnownValueParams(OnlineParams):
    """For the strategies that score a candidate by its loss or ‖p − y‖₂ (:meth:`OnlineSelection.signal`): how
    long a known value stands in for a forward."""

    reuse_within: int = Field(0, ge=0, description="score a candidate from the training-signal cache when its "
                              "latest training or selection forward is at most this many steps old (0: always "
                              "forward)")
    reuse_selection_forwards: bool = Field(True, description="under reuse_within, a candidate's latest selection "
                                           "forward counts as known too (False: only its training forwards)")
    unseen: Literal["forward", "first"] = Field("forward", description="under reuse_within, a candidate with no "
                                                "known value: forwarded, or taken first (the step trains it and its "
                                                "loss becomes known: no selection forward at all)")

    @model_validator(mode="after")
    def _unseen_needs_reuse(self) -> KnownValueParams:
        if self.unseen == "first" and not self.reuse_within:
            raise ValueError("unseen='first' takes candidates without a known value first, which needs known "
                             "values: set reuse_within > 0 (e.g. 1000000: every value, however old)")
        return self


SignalKind = Literal["loss", "grad_norm"]


@dataclass
class PassPlan:
    """The choices of the rest of a pass, made when it began: row j is the candidate set taken at stream position
    ``first + j·width``; ``chosen[j]`` is its choice, or None where it is made at its step."""

    first: int
    width: int
    chosen: list[Tensor | None]

    def choice(self, position: int) -> Tensor | None:
        """The choice made for the candidates taken at stream position ``position``, if one was made."""
        row, offset = divmod(position - self.first, self.width)
        return self.chosen[row] if not offset and 0 <= row < len(self.chosen) else None

    def upcoming(self, position: int) -> list[Tensor]:
        """The choices made for the candidate sets from stream position ``position`` on, up to the first not made."""
        row, offset = divmod(position - self.first, self.width)
        made: list[Tensor] = []
        for chosen in self.chosen[max(row, 0):] if not offset else []:
            if chosen is None:
                break
            made.append(chosen)
        return made


def top_rows(scores: Tensor, count: int) -> Tensor:
    """Positions of the ``count`` highest scores of each row, highest first; ties go to the earlier position (a
    stable sort: the same choice for a row whether it is sorted alone or with others)."""
    return torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :count]


class OnlineSelection(SeededStrategy):
    """The candidate stream and top-n_b selection; subclasses score candidates (higher is kept)."""

    name = "online"
    params: OnlineParams
    #: the per-example value its score reads (a loss or ‖p − y‖₂: known values apply), None if it reads none
    signal_kind: ClassVar[SignalKind | None] = None
    #: its choice is the n_b highest of :meth:`score_values`: a pass's choices can be made when it begins
    top_of_values: ClassVar[bool] = False

    def __init__(self, params: OnlineParams | None = None) -> None:
        super().__init__(params)
        self.stream = ShuffledPass()  # over the training set: positions are training indices
        self.steps = 0  # steps observed: the step the next batch is for
        self.scored: TrainingSignals | None = None  # the latest selection forward of each example (reuse_within)
        self.plan: PassPlan | None = None  # derived state: remade from the stream and the known values on resume

    @property
    def selected(self) -> int:
        """n_b: the run's batch size."""
        return self.context.batch_size

    @property
    def candidate_count(self) -> int:
        """n_B = n_b / selection_ratio, at most the training set."""
        return min(round(self.selected / self.params.selection_ratio), len(self.context.train))

    def candidates(self) -> Tensor:
        """The next n_B indices of the shuffled pass (a new pass when this one runs out)."""
        size = self.candidate_count
        if self.stream.remaining < size:
            self.stream.shuffle(len(self.context.train), self.generator)
            self.plan = None
        return self.stream.take(size)

    def planned(self) -> list[Tensor]:
        """What the next steps will gather (PlansBatches): the choices already made for the pass's next candidate
        sets, up to the first that is made at its step, when the strategy plans its passes; else the candidate
        sets of the rest of the pass, or none when some candidates are scored from the signal cache and only the
        others gathered."""
        if self.ctx is None:
            return []
        if self.plans_passes:
            return [] if self.plan is None else self.plan.upcoming(self.stream.cursor)
        if isinstance(self.params, KnownValueParams) and self.params.reuse_within:
            return []
        return self.stream.ahead(self.candidate_count, whole=True)

    def batches(self) -> Iterator[Batch]:
        while True:
            candidates = self.candidates()
            planned = self.planned_choice(candidates)
            indices, weights = (planned, None) if planned is not None else self.choose(candidates)
            yield Batch(indices, weights)

    def choose(self, candidates: Tensor) -> tuple[Tensor, Tensor | None]:
        """The n_b highest-scoring candidates (no weights)."""
        scores = self.score(candidates).cpu()
        return candidates[top_rows(scores, min(self.selected, len(candidates)))], None

    def score(self, candidates: Tensor) -> Tensor:
        """Each candidate's score: :meth:`score_values` of its :meth:`signal` (when the strategy reads one)."""
        kind = self.signal_kind
        return self.score_values(None if kind is None else self.signal(candidates, kind), candidates)

    def score_values(self, values: Tensor | None, candidates: Tensor) -> Tensor:
        """The scores of ``candidates`` (any shape) given their values of ``signal_kind`` (same shape): by default
        the values themselves."""
        if values is None:
            raise NotImplementedError(f"{type(self).__name__} reads no signal: it scores by score_values or score")
        return values

    @cached_property
    def plans_passes(self) -> bool:
        """Whether this strategy makes a pass's choices when the pass begins (see the module's docstring)."""
        if not self.top_of_values:
            return False
        return self.signal_kind is None or bool(self.known_value_params.reuse_within)

    def planned_choice(self, candidates: Tensor) -> Tensor | None:
        """The choice planned for ``candidates``, just taken from the stream (planning the pass if it is not yet),
        or None when it is to be made now."""
        if not self.plans_passes:
            return None
        position = self.stream.cursor - len(candidates)
        if self.plan is None:
            self.plan = self.plan_pass(candidates, position)
        return self.plan.choice(position)

    def plan_pass(self, current: Tensor, position: int) -> PassPlan:
        """The choices of ``current`` and of the pass's later candidate sets whose candidates all have a score
        that needs no forward at their step (``position``: where ``current`` begins in the stream)."""
        rows = torch.stack([current, *self.stream.ahead(len(current), whole=True)]).cpu()
        flat = rows.flatten()
        values, ready = None, torch.ones(len(rows), dtype=torch.bool)
        if self.signal_kind is not None:
            at = self.steps + torch.arange(len(rows)).repeat_interleave(rows.shape[1])  # the step of each row
            values, last, forward = self.known(flat, at, self.signal_kind)
            unseen = (forward & (last < 0)).nonzero().squeeze(1)
            if self.scored is not None and 0 < len(unseen) < rows.shape[1]:  # the previous pass's leftovers
                values[unseen] = self.forwarded_values(flat[unseen], self.signal_kind)
                forward[unseen] = False
            ready = ~forward.view(rows.shape).any(dim=1)
        scores = self.score_values(values, flat).view(rows.shape)
        chosen = rows.gather(1, top_rows(scores, min(self.selected, rows.shape[1])))
        return PassPlan(position, rows.shape[1],
                        [row if made else None for row, made in zip(chosen.unbind(0), ready.tolist(), strict=True)])

    def signal(self, candidates: Tensor, kind: SignalKind) -> Tensor:
        """Each candidate's loss (or ‖p − y‖₂), on the CPU: under ``reuse_within``, its latest known value where
        that is at most ``reuse_within`` steps old (its latest training forward, from the training-signal cache, or
        this strategy's latest selection forward of it); from one selection forward for the others."""
        where = candidates.cpu()
        values, _, forward = self.known(where, self.steps, kind)
        if forward.any():
            values[forward] = self.forwarded_values(where[forward], kind)
        return values

    def known(self, where: Tensor, at: Tensor | int, kind: SignalKind) -> tuple[Tensor, Tensor, Tensor]:
        """For training indices ``where`` to be scored at steps ``at``: their latest known values (+inf for one
        never seen under ``unseen="first"``), the steps those are from (−1: none), and which need a forward."""
        p = self.known_value_params
        values, last = latest_known(self.known_sources(), where, kind)  # none without reuse_within: all forwarded
        forward = (last < 0) | (last < at - p.reuse_within)  # never seen, or too long ago
        if p.unseen == "first":  # ranked above every known value, trained, and known from then on
            values[last < 0] = math.inf
            forward &= last >= 0
        return values, last, forward

    def forwarded_values(self, where: Tensor, kind: SignalKind) -> Tensor:
        """The values of ``kind`` from one selection forward of training indices ``where`` (remembered under
        ``reuse_selection_forwards``)."""
        logits, y = self.forward(where)
        losses = per_example_losses(logits, y)
        if self.scored is not None:
            self.scored.record(where, logits, y, losses, self.steps)
        fresh = losses if kind == "loss" else logit_gradients(logits, y).norm(dim=1)
        return fresh.float().cpu()

    @property
    def known_value_params(self) -> KnownValueParams:
        """The parameters of scoring by known values: a strategy that scores by :meth:`signal` declares them."""
        if not isinstance(self.params, KnownValueParams):
            raise TypeError(f"{type(self).__name__} scores by signal() but its parameters are not KnownValueParams")
        return self.params

    def known_sources(self) -> list[TrainingSignals]:
        """Where a candidate's latest known value may come from: nothing (always forward) without
        ``reuse_within``; else the training-signal cache and, under ``reuse_selection_forwards``, this strategy's
        own selection forwards."""
        p = self.known_value_params
        if not p.reuse_within:
            return []
        cache = self.context.training_signals
        if self.steps:  # own forwards alone would freeze the scores at their first
            cache.require_recorded(f"{self.name} with reuse_within", ", or set reuse_within=0")
        if p.reuse_selection_forwards and self.scored is None:
            self.scored = TrainingSignals(len(self.context.train))
        return [cache] if self.scored is None else [cache, self.scored]

    def forward(self, candidates: Tensor) -> tuple[Tensor, Tensor]:
        """Logits (eval mode, no grad) and targets of the candidates, counted as selection forwards."""
        ctx = self.context
        x, y = ctx.train[candidates]
        ctx.log.count_forward(len(candidates))
        return ctx.forward(x, batch_size=max(len(candidates), 1)).logits, y

    def observe(self, batch: Batch, out: StepOutput) -> None:
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        scored = None if self.scored is None else self.scored.state_dict()
        return {"generator": self.generator.get_state(), **self.stream.state_dict(), "steps": self.steps,
                "scored": scored}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.stream.load_state_dict(state)
        self.plan = None
        self.steps = state.get("steps", 0)
        if state.get("scored") is not None:
            self.scored = TrainingSignals(len(state["scored"]["loss"]))
            self.scored.load_state_dict(state["scored"])


def latest_known(sources: list[TrainingSignals], indices: Tensor, kind: SignalKind) -> tuple[Tensor, Tensor]:
    """Each example's most recent value of ``kind`` among ``sources`` and the step it is from (−1: none has it)."""
    values = torch.full((len(indices),), float("nan"))
    last = torch.full((len(indices),), -1, dtype=torch.long)
    for source in sources:
        step, value = source.step[indices], (source.loss if kind == "loss" else source.grad_norm)[indices]
        newer = step > last
        values, last = torch.where(newer, value, values), torch.where(newer, step, last)
    return values, last


@register("uniform", family="online", params=OnlineParams, summary="n_b uniformly random of n_B candidates")
class Uniform(OnlineSelection):

    def choose(self, candidates: Tensor) -> tuple[Tensor, Tensor | None]:
        return candidates[: self.selected], None  # the stream is already shuffled


@register("train-loss", family="online", params=KnownValueParams, summary="the n_b candidates of highest loss")
class TrainLoss(OnlineSelection):
    params: KnownValueParams
    signal_kind = "loss"
    top_of_values = True


@register("grad-norm", family="online", params=KnownValueParams,
          summary="the n_b candidates of largest logit-gradient norm ‖p − y‖₂")
class GradNorm(OnlineSelection):
    params: KnownValueParams
    signal_kind = "grad_norm"
    top_of_values = True


class ImportanceParams(KnownValueParams):
    """grad-norm-is draws by its scores, so every candidate needs a finite one; ``uniform_share`` mixes the
    draw with a uniform one (defensive importance sampling), which bounds every weight."""

    uniform_share: float = Field(0.0, ge=0, le=1, description="q = (1 − s)·‖p − y‖₂ / Σ + s / n_B: each weight "
                                 "at most 1 / s, the estimate still unbiased (needed under reuse_within: a known "
                                 "value may be stale, and a small one's weight is then not offset by its gradient)")

    @model_validator(mode="after")
    def _every_candidate_scored(self) -> ImportanceParams:
        if self.unseen == "first":
            raise ValueError("grad-norm-is draws candidates with probability ∝ ‖p − y‖₂, which a candidate taken "
                             "first (no known value) does not have: use unseen='forward'")
        if self.reuse_within and not self.uniform_share:
            raise ValueError("grad-norm-is under reuse_within weights a candidate by 1 / q from a known value that "
                             "may be stale: a once-small value then gives a current gradient a weight up to 1e8 "
                             "times, and training diverges; set uniform_share > 0 (each weight at most 1 / s: "
                             "2 at s = 0.5, the estimate still unbiased)")
        return self


@register("grad-norm-is", family="online", params=ImportanceParams,
          summary="n_b drawn with replacement ∝ ‖p − y‖₂, weighted 1/(n_B·q): unbiased importance sampling")
class GradNormIS(GradNorm):
    params: ImportanceParams
    top_of_values = False  # draws by its scores

    def choose(self, candidates: Tensor) -> tuple[Tensor, Tensor | None]:
        q = importance_probabilities(self.score(candidates).cpu(), uniform_share=self.params.uniform_share)
        drawn = torch.multinomial(q, self.selected, replacement=True, generator=self.generator)
        return candidates[drawn], 1.0 / (len(candidates) * q[drawn])


def importance_probabilities(norms: Tensor, floor: float = 1e-8, *, uniform_share: float = 0.0) -> Tensor:
    """q_i ∝ norms (a floor keeps every candidate drawable, so the estimate stays unbiased), mixed with the uniform
    distribution in the share ``uniform_share`` (defensive importance sampling: q_i ≥ uniform_share / n)."""
    norms = norms.double().clamp_min(floor)
    q = norms / norms.sum()
    if uniform_share:
        q = (1.0 - uniform_share) * q + uniform_share / len(q)
    return q.float()


class HoldoutParams(OnlineParams):
    holdout_model: str | None = Field(None, description="architecture trained on the holdout split "
                                      "(default: the target's)")
    holdout_epochs: int | None = Field(None, ge=1, description="its training epochs (default: the run's)")


class RhoLossParams(HoldoutParams, KnownValueParams):
    """RHO-LOSS scores by the loss (known values apply) and the holdout model."""


class HoldoutScored(OnlineSelection):
    """Online selection that looks up a holdout-trained model's logits by training index."""

    params: HoldoutParams

    def __init__(self, params: HoldoutParams | None = None) -> None:
        super().__init__(params)
        self._holdout_logits: Tensor | None = None
        self._per_example: dict[str, Tensor] = {}  # constants of each training example under the holdout model
        self.proxy_seconds = 0.0

    @property
    def holdout_logits(self) -> Tensor | None:
        """The holdout model's logits of every training example, [n_train, C] (None until provided)."""
        return self._holdout_logits

    @holdout_logits.setter
    def holdout_logits(self, logits: Tensor | None) -> None:
        self._holdout_logits, self._per_example = logits, {}

    def proxy_request(self) -> ProxyRequest | None:
        """The holdout model's run (NeedsProxy)."""
        return self.request_for(self.params)

    @classmethod
    def request_for(cls, params: HoldoutParams) -> ProxyRequest | None:
        """The proxy run a strategy of this class with ``params`` scores with (what the runner caches by)."""
        return ProxyRequest("holdout", params.holdout_epochs, params.holdout_model)

    def provide(self, record: ProxyRecord) -> None:
        if record.holdout_logits is None:
            raise InvalidInputError("the proxy record has no holdout-model logits")
        self.holdout_logits, self.proxy_seconds = record.holdout_logits.float().cpu(), record.seconds

    def irreducible_loss(self, candidates: Tensor) -> Tensor:
        """The holdout model's loss of each of ``candidates`` (any shape), computed once for the training set."""
        return self.per_example("loss", per_example_losses)[candidates.cpu().flatten()].view(candidates.shape)

    def holdout_log_probs(self) -> Tensor:
        """The holdout model's log-probability of each training example's label, float64, computed once."""
        return self.per_example("log_p", target_log_probs)

    def per_example(self, name: str, of: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        """``of(holdout logits, labels)`` over the whole training set, computed at its first use for the current
        holdout model (row by row, so that each example's value is the one its own rows would give)."""
        if self.holdout_logits is None:
            raise InvalidInputError(f"strategy {self.name!r} needs the holdout model's logits: run it with "
                                    "`coreselect train --holdout 0.5` or call provide() first")
        if name not in self._per_example:
            self._per_example[name] = of(self.holdout_logits, self.context.train.targets.cpu())
        return self._per_example[name]

    def metrics(self) -> dict[str, float]:
        return {"proxy_s": self.proxy_seconds}


@register("irreducible-loss", family="online", params=HoldoutParams,
          summary="the n_b candidates of lowest loss under a model trained on the holdout split")
class IrreducibleLoss(HoldoutScored):
    top_of_values = True

    def score_values(self, values: Tensor | None, candidates: Tensor) -> Tensor:
        return -self.irreducible_loss(candidates)


@register("rho-loss", family="online", params=RhoLossParams,
          summary="the n_b candidates of highest reducible holdout loss: CE − irreducible loss (RHO-LOSS)")
class RhoLoss(HoldoutScored):
    params: RhoLossParams
    signal_kind = "loss"
    top_of_values = True

    def score_values(self, values: Tensor | None, candidates: Tensor) -> Tensor:
        assert values is not None
        return values - self.irreducible_loss(candidates)


__all__ = ["HoldoutScored", "KnownValueParams", "OnlineParams", "OnlineSelection", "importance_probabilities"]
