"""Hooks into the training loop; subclass :class:`Callback` and override what you need."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
