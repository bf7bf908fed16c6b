"""Hooks into the training loop; subclass :class:`Callback` and override what you need."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from torch import Tensor

if TYPE_CHECKING:
    from coreselect.strategies.protocol import Batch, StepOutput
    from coreselect.train.trainer import EvalRecord, Trainer, TrainResult


class Callback:
    """No-op hooks, called by :class:`~coreselect.train.trainer.Trainer` in this order."""

    def on_train_begin(self, trainer: Trainer) -> None:
        """Before the first step (also after resuming from a checkpoint)."""

    def on_step_end(self, trainer: Trainer, batch: Batch, out: StepOutput) -> None:
        """After each optimiser step."""

    def on_evaluation(self, trainer: Trainer, record: EvalRecord) -> None:
        """After each evaluation, before the checkpoint is written."""

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        """When the budget is spent."""

    def state_dict(self) -> dict[str, Any]:
        """What must survive an interruption (written with each checkpoint); stateless callbacks keep {}."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` when a run resumes (before :meth:`on_train_begin`)."""


class ExampleStatistic(Protocol):
    """A per-example statistic of the training steps' logits (forgetting events, margins)."""

    def observe(self, indices: Tensor, logits: Tensor, targets: Tensor) -> None: ...

    def scores(self) -> Tensor: ...

    def state_dict(self) -> dict[str, Tensor]: ...

    def load_state_dict(self, state: dict[str, Tensor]) -> None: ...


class ExampleStatisticRecorder(Callback):
    """Feeds each training step's logits (no extra forward) to a per-example statistic made by :meth:`create`;
    after training, :meth:`example_scores` gives ``{name: scores}`` (the runner stores it). Resumes with the run."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self.statistic: ExampleStatistic | None = None

    @abstractmethod
    def create(self, n: int) -> ExampleStatistic:
        """An empty statistic over ``n`` examples."""

    def on_train_begin(self, trainer: Trainer) -> None:
        if self.statistic is None:
            self.statistic = self.create(len(trainer.train_data))

    def on_step_end(self, trainer: Trainer, batch: Batch, out: StepOutput) -> None:
        assert self.statistic is not None
        targets = trainer.train_data.targets[batch.indices.to(trainer.train_data.device)]
        self.statistic.observe(batch.indices, out.logits.detach(), targets.to(out.logits.device))

    def example_scores(self) -> dict[str, Tensor]:
        return {} if self.statistic is None else {self.name: self.statistic.scores()}

    def state_dict(self) -> dict[str, Any]:
        return {} if self.statistic is None else self.statistic.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.statistic = self.create(0)
            self.statistic.load_state_dict(state)
