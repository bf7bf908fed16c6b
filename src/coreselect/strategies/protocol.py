"""The one interface every selection method implements: a source of weighted mini-batches."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from coreselect.data.examples import Examples
from coreselect.errors import InvalidInputError
from coreselect.signals.forward import ForwardOutputs, forward_in_batches
from coreselect.signals.gradients import weighted
from coreselect.signals.training import TrainingSignals


@dataclass(frozen=True)
class Batch:
    """Which training examples the next step sees, and the weight of each one's loss (None = all 1)."""

    indices: Tensor
    weights: Tensor | None = None

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def weighted_mean(self, losses: Tensor) -> Tensor:
        """The batch loss: per-example ``losses`` weighted by the batch's weights, averaged."""
        return weighted(losses, self.weights).mean()

    def normalised(self) -> Batch:
        """The batch with its weights rescaled to mean 1 (the batch loss then a weighted average of its losses,
        never larger than its largest one, as CORDS trains)."""
        if self.weights is None:
            return self
        return Batch(self.indices, self.weights * (len(self.weights) / self.weights.sum().clamp_min(1e-12)))

    def head(self, n: int) -> Batch:
        """The first ``n`` examples of the batch (the whole batch if it has no more)."""
        if n >= len(self):
            return self
        return Batch(self.indices[:n], None if self.weights is None else self.weights[:n])


@dataclass(frozen=True)
class StepOutput:
    """What a training step computed anyway, handed back to the strategy for free."""

    step: int
    logits: Tensor
    losses: Tensor
    learning_rate: float = 0.0  # the optimiser's learning rate at this step
    features: Tensor | None = None  # the forward's penultimate features, for a strategy that declares NeedsFeatures
    gradient: list[Tensor] | None = None  # the gradient of the step's loss (trainable parameters, in order; before
    # clipping), at the parameters the step began from, for a NeedsStepGradient strategy that asked for it


@dataclass(frozen=True)
class Budget:
    """Back-propagated examples allowed, as a fraction of full training for ``epochs`` epochs.

    A *compressed epoch* holds ``fraction · n`` examples, so a budgeted run has ``epochs`` of them.
    """

    fraction: float
    epochs: int
    dataset_size: int
    batch_size: int

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0 or not math.isfinite(self.fraction):
            raise InvalidInputError(
                f"budget must lie in (0, 1] (the fraction of full training's back-propagated examples), "
                f"got {self.fraction}"
            )
        if self.epochs < 1 or self.batch_size < 1 or self.dataset_size < 1:
            raise InvalidInputError("epochs, batch size and dataset size must be positive")

    @property
    def total_examples(self) -> int:
        return max(1, round(self.fraction * self.epochs * self.dataset_size))

    @property
    def total_steps(self) -> int:
        """Steps when every batch is full (the trainer's schedule follows examples, not steps)."""
        return math.ceil(self.total_examples / self.batch_size)

    @property
    def epoch_examples(self) -> int:
        return max(1, round(self.fraction * self.dataset_size))


@dataclass
class SelectionRound:
    step: int
    indices: Tensor
    weights: Tensor | None


@dataclass
class SelectionLog:
    """What strategies report about their selections; the trainer stores it with the run."""

    step: int = 0
    rounds: list[SelectionRound] = field(default_factory=list)
    forward_examples: int = 0

    def record(self, indices: Tensor, weights: Tensor | None = None) -> None:
        """Note a selection made at the current step (indices into the training set)."""
        weights = None if weights is None else weights.detach().cpu().float()
        self.rounds.append(SelectionRound(self.step, indices.detach().cpu().to(torch.int64), weights))

    def count_forward(self, n: int) -> None:
        """Note ``n`` examples forwarded for selection (not back-propagated)."""
        self.forward_examples += int(n)

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "forward_examples": self.forward_examples,
            "rounds": [{"step": r.step, "indices": r.indices, "weights": r.weights} for r in self.rounds],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.forward_examples = state["step"], state["forward_examples"]
        self.rounds = [SelectionRound(r["step"], r["indices"], r["weights"]) for r in state["rounds"]]


@dataclass
class Context:
    """Everything a strategy may use: model, data, budget, seed, device, and the selection log. A strategy
    forwards examples through :meth:`forward`, in the precision the run gives selection forwards."""

    model: nn.Module
    train: Examples
    budget: Budget
    seed: int = 0
    val: Examples | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    log: SelectionLog = field(default_factory=SelectionLog)
    learning_rate: float = 0.0  # the optimiser's current learning rate, kept up to date by the trainer
    peak_learning_rate: float = 0.0  # the configured (schedule's peak) learning rate; 0: unknown, use the current
    signals: TrainingSignals | None = None  # the loop records each step here (the trainer does); made if None
    hands_step_gradients: bool = False  # the loop fills StepOutput.gradient when asked (the Trainer does)
    forward_dtype: torch.dtype | None = None  # selection forwards autocast to this (torch.bfloat16); None: fp32

    def __post_init__(self) -> None:
        if self.signals is None:
            self.signals = TrainingSignals(len(self.train))

    @property
    def training_signals(self) -> TrainingSignals:
        """The cache of each example's latest training loss, ‖p − y‖₂ and step."""
        assert self.signals is not None  # made in __post_init__
        return self.signals

    @property
    def batch_size(self) -> int:
        return self.budget.batch_size

    def forward(self, inputs: Tensor | Examples, *, indices: Tensor | None = None, batch_size: int = 256,
                with_features: bool = False) -> ForwardOutputs:
        """The model's no-grad, eval-mode logits (and penultimate features) of ``inputs`` (at ``indices``), in
        ``batch_size`` chunks, under autocast to ``forward_dtype`` if set; fp32 outputs. Everything a strategy then
        computes from them (similarities, posteriors, weights) runs outside autocast, in fp32."""
        return forward_in_batches(self.model, inputs, indices=indices, batch_size=batch_size,
                                  with_features=with_features, dtype=self.forward_dtype)


@runtime_checkable
class Strategy(Protocol):
    """A source of weighted mini-batches; it decides itself when and what to (re)select."""

    name: str

    def setup(self, ctx: Context) -> None: ...

    def batches(self) -> Iterator[Batch]:
        """Endless batches; after ``load_state_dict`` they resume where the last consumed one left off."""
        ...

    def observe(self, batch: Batch, out: StepOutput) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class ReportsMetrics(Protocol):
    """A strategy with instrumentation of its own (e.g. CREST's checks, a proxy's seconds), recorded with each
    evaluation."""

    def metrics(self) -> dict[str, float]: ...


@runtime_checkable
class NeedsValidation(Protocol):
    """A strategy whose selection reads the validation split (``Context.val``)."""

    @property
    def needs_validation_split(self) -> bool: ...


def check_validation(strategy: Strategy, ctx: Context) -> None:
    """Refuse a context without the validation split ``strategy`` declares it reads, naming the fix."""
    if isinstance(strategy, NeedsValidation) and strategy.needs_validation_split and not (ctx.val and len(ctx.val)):
        raise InvalidInputError(f"{strategy.name} needs a validation split; pass --val-fraction 0.1 "
                                "(or give Context.val)")


@runtime_checkable
class NeedsFeatures(Protocol):
    """A strategy that reads the penultimate features of each training step's forward (``StepOutput.features``,
    the input of the model's last ``nn.Linear``); the loop captures them (the Trainer and the integrations do)."""

    needs_step_features: bool


@runtime_checkable
class NeedsStepGradient(Protocol):
    """A strategy that may read the gradient a training step back-propagated (``StepOutput.gradient``): the loop
    copies it for the steps where ``needs_step_gradient`` is true when it yields their batch, if the loop hands
    gradients at all (``Context.hands_step_gradients``; the Trainer does, the loop integrations do not)."""

    needs_step_gradient: bool


@runtime_checkable
class PlansBatches(Protocol):
    """A strategy that knows its next batches ahead of time (until it selects again): data read on demand can
    be read ahead for them without changing anything the strategy does."""

    def planned(self) -> list[Tensor]:
        """Indices of the batches ``batches()`` will yield next before selecting again (possibly none)."""
        ...


def budgeted(strategy: Strategy, budget: Budget, spent: int = 0) -> Iterator[Batch]:
    """The strategy's batches until exactly ``budget.total_examples`` have been handed out, the last batch cut
    to fit; ``spent`` examples already back-propagated (a resumed run) count against it. Any loop spends
    exactly the budget by consuming this."""
    for batch in strategy.batches():
        if spent >= budget.total_examples:
            return
        batch = batch.head(budget.total_examples - spent)
        spent += len(batch)
        yield batch
