"""What every loop integration shares: a strategy's batches drawn when a step begins, its outputs handed back
after the optimizer step, the budget spent exactly.

Loops read their data ahead (Lightning and Accelerate fetch the next batch before the current step ends), but an
adaptive strategy must choose the next batch with the model the current step leaves. So the loop's DataLoader
yields empty :class:`SelectedBatch` tickets and the integration fills each one as its step begins.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset

from coreselect.data.examples import Examples
from coreselect.errors import InvalidInputError
from coreselect.models.features import PenultimateFeatures
from coreselect.strategies.protocol import Batch, Budget, Context, NeedsFeatures, StepOutput, Strategy, budgeted


def learning_rates(optimizer: torch.optim.Optimizer | None) -> tuple[float, float]:
    """The optimiser's current learning rate and its configured peak: what its scheduler recorded (one-cycle's
    ``max_lr``, any scheduler's ``initial_lr``), at least the current one; zeros without an optimiser."""
    if optimizer is None:
        return 0.0, 0.0
    group = optimizer.param_groups[0]
    current = float(group["lr"])
    return current, max(float(group.get("max_lr", 0.0)), float(group.get("initial_lr", 0.0)), current)


class SelectedBatch:
    """One training step's batch: empty when the loop fetches it, filled by the feed as the step begins."""

    def __init__(self) -> None:
        self.batch: Batch | None = None
        self.data: tuple[Tensor, Tensor] | None = None
        self.logits: Tensor | None = None
        self.losses: Tensor | None = None

    def _filled(self) -> tuple[Tensor, Tensor]:
        if self.data is None:
            raise InvalidInputError("this batch was never filled by a strategy: pass the selection callback to the "
                                    "loop (Lightning: Trainer(callbacks=[selection]))")
        return self.data

    @property
    def inputs(self) -> Tensor:
        """The inputs of the examples the strategy chose for this step."""
        return self._filled()[0]

    @property
    def targets(self) -> Tensor:
        """Their labels."""
        return self._filled()[1]

    def __len__(self) -> int:
        return 0 if self.batch is None else len(self.batch)

    def __contains__(self, key: object) -> bool:  # loops probe batches like dicts ("labels" in batch)
        return False

    def loss(self, logits: Tensor, losses: Tensor) -> Tensor:
        """The step's loss: the per-example ``losses`` weighted as the strategy asks, averaged. Keeps ``logits``
        and ``losses`` (detached) for the strategy."""
        self._filled()
        assert self.batch is not None
        if losses.shape != (len(self.batch),):
            raise InvalidInputError(f"per-example losses must have shape ({len(self.batch)},), got "
                                    f"{tuple(losses.shape)}; compute them with reduction='none'")
        self.logits, self.losses = logits.detach().float(), losses.detach().float()
        return self.batch.weighted_mean(losses)


class _Tickets(IterableDataset):
    def __iter__(self) -> Iterator[SelectedBatch]:
        while True:
            yield SelectedBatch()


class SelectionFeed:
    """Draws ``strategy``'s batches from ``train`` under ``budget`` for a loop that is not the library's own."""

    def __init__(self, strategy: Strategy, train: Examples, budget: Budget, *, seed: int = 0) -> None:
        if budget.dataset_size != len(train):
            raise InvalidInputError(f"the budget is for {budget.dataset_size} examples but the training data holds "
                                    f"{len(train)}; make it Budget(..., dataset_size=len(train))")
        self.strategy, self.train, self.budget, self.seed = strategy, train, budget, seed
        self.context: Context | None = None
        self.step = self.spent = 0
        self._batches: Iterator[Batch] | None = None
        self._pending: dict[str, Any] | None = None  # a state loaded before the loop started
        self._features: PenultimateFeatures | None = None  # capturing the step's features (NeedsFeatures)

    @property
    def done(self) -> bool:
        """Whether the budget is spent."""
        return self.spent >= self.budget.total_examples

    @property
    def max_steps(self) -> int:
        """An upper bound on the steps the budget takes (every pass's last batch may be partial)."""
        return self.budget.epochs * -(-self.budget.epoch_examples // self.budget.batch_size)

    def dataloader(self) -> DataLoader:
        """The loop's training DataLoader: endless empty tickets (the feed fills them; read in this process)."""
        return DataLoader(_Tickets(), batch_size=None, num_workers=0)

    def start(self, model: nn.Module, device: torch.device) -> None:
        """Set the strategy up on ``model`` (once; restoring a loaded state)."""
        if self.context is not None:
            return
        self.train = self.train.to(device)
        self.context = Context(model=model, train=self.train, budget=self.budget, seed=self.seed, device=device)
        self.strategy.setup(self.context)
        if self._pending is not None:
            self._restore(self._pending)
        self._batches = budgeted(self.strategy, self.budget, spent=self.spent)

    def fill(self, ticket: SelectedBatch, optimizer: torch.optim.Optimizer | None) -> None:
        """Choose the step's batch now, with the model as the previous step left it (``optimizer``: the loop's,
        whose learning rates the strategy may read; None before the loop has made it)."""
        if self.context is None or self._batches is None:
            raise InvalidInputError("the feed has not started: call start(model, device) before the first step")
        current, peak = learning_rates(optimizer)
        self.context.learning_rate, self.context.log.step = current, self.step
        self.context.peak_learning_rate = max(self.context.peak_learning_rate, peak)
        batch = next(self._batches, None)
        if batch is None:
            raise InvalidInputError("the budget is spent: stop the loop when `done` (the callbacks do)")
        ticket.batch, ticket.data = batch, self.train[batch.indices]
        if isinstance(self.strategy, NeedsFeatures):  # the loop's training forward passes through the hook
            self._features = PenultimateFeatures(self.context.model).__enter__()

    def observe(self, ticket: SelectedBatch) -> None:
        """Hand the strategy the step's outputs (after the optimizer step) and count its examples."""
        assert self.context is not None and ticket.batch is not None
        if ticket.logits is None or ticket.losses is None:
            raise InvalidInputError("the training step did not report its outputs: return batch.loss(logits, losses)")
        batch, features = ticket.batch, None
        if self._features is not None:
            features = None if self._features.value is None else self._features.value.detach().float()
            self._features.__exit__(None, None, None)
            self._features = None
        out = StepOutput(self.step, ticket.logits, ticket.losses, self.context.learning_rate, features)
        self.context.training_signals.record(batch.indices, out.logits, ticket.targets, out.losses, self.step)
        self.strategy.observe(batch, out)
        self.step += 1
        self.spent += len(batch)

    def state_dict(self) -> dict[str, Any]:
        if self.context is None:
            return self._pending or {}
        return {"strategy": self.strategy.state_dict(), "log": self.context.log.state_dict(),
                "signals": self.context.training_signals.state_dict(), "step": self.step, "spent": self.spent,
                "peak_learning_rate": self.context.peak_learning_rate}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state`` (applied when the loop starts, or at once if it has)."""
        if not state:
            return
        if self.context is None:
            self._pending = state
            self.step, self.spent = state["step"], state["spent"]
        else:
            self._restore(state)
            self._batches = budgeted(self.strategy, self.budget, spent=self.spent)

    def _restore(self, state: dict[str, Any]) -> None:
        assert self.context is not None
        self.strategy.load_state_dict(state["strategy"])
        self.context.log.load_state_dict(state["log"])
        self.context.training_signals.load_state_dict(state["signals"])
        self.step, self.spent = state["step"], state["spent"]
        self.context.peak_learning_rate = state.get("peak_learning_rate", 0.0)  # (absent from older states)
