"""Epoch strategies scored by the losses the training steps computed (the training-signal cache): no forward."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from coreselect.strategies.epochs import EpochStrategy
from coreselect.strategies.protocol import Batch, StepOutput
from coreselect.strategies.registry import StrategyParams


class StepLossScored(EpochStrategy):
    """Reads each example's latest training loss from :class:`~coreselect.signals.TrainingSignals` and counts the
    examples trained on (from :meth:`observe`), so that a loop which trains without recording gets a clear
    error instead of scores that never change."""

    def __init__(self, params: StrategyParams | None = None) -> None:
        super().__init__(params)
        self.trained = 0  # examples back-propagated so far: the budget share spent

    def step_losses(self, unseen: float) -> Tensor:
        """The latest training loss of each example, ``unseen`` where it has not been trained on yet."""
        signals = self.context.training_signals
        if self.trained:
            signals.require_recorded(self.name)
        return torch.where(signals.seen(), signals.loss, torch.full_like(signals.loss, unseen))

    def observe(self, batch: Batch, out: StepOutput) -> None:
        self.trained += len(batch)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "trained": self.trained}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.trained = state["trained"]
