"""The training-signal cache: what each example's latest training forward computed, kept for free.

Per training example: the loss, the logit-gradient norm ‖p − y‖₂ and the step of its latest training forward
(−1 while it has not been trained on). The loop records every step (:class:`~coreselect.train.Trainer` does;
in your own loop call :meth:`TrainingSignals.record` after each step); it costs no forward, O(n) memory, and
travels in checkpoints. Under DDP the step's outputs are gathered first, so every rank records the same.
Strategies read it (InfoBatch scores by it) instead of paying for forwards.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from coreselect.errors import InvalidInputError
from coreselect.signals.gradients import logit_gradients


class TrainingSignals:
    """Latest training loss, ‖p − y‖₂ and step per example (NaN and −1 where an example was never trained on)."""

    def __init__(self, size: int) -> None:
        self.loss = torch.full((size,), float("nan"))
        self.grad_norm = torch.full((size,), float("nan"))
        self.step = torch.full((size,), -1, dtype=torch.long)
        self.steps_recorded = 0

    @torch.no_grad()
    def record(self, indices: Tensor, logits: Tensor, targets: Tensor, losses: Tensor, step: int) -> None:
        """The outputs of training step ``step`` on the examples ``indices`` (a repeated index keeps one of its
        identical values)."""
        where = indices.detach().cpu().long()
        self.loss[where] = losses.detach().float().cpu()
        self.grad_norm[where] = logit_gradients(logits.detach(), targets).norm(dim=1).float().cpu()
        self.step[where] = step
        self.steps_recorded += 1

    def require_recorded(self, reader: str, alternative: str = "") -> None:
        """A clear error for ``reader``, which reads this cache after training, when no step has recorded into it
        (a loop that trains without calling :meth:`record`): its scores would never change."""
        if not self.steps_recorded:
            raise InvalidInputError(f"{reader} scores by the training-signal cache, which no step has filled: call "
                                    "ctx.signals.record(...) after each step in your own loop (the Trainer does)"
                                    f"{alternative}")

    def seen(self) -> Tensor:
        """Which examples have been trained on at least once (bool, one per example)."""
        return self.step >= 0

    def state_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "grad_norm": self.grad_norm, "step": self.step,
                "steps_recorded": self.steps_recorded}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss, self.grad_norm, self.step = state["loss"], state["grad_norm"], state["step"]
        self.steps_recorded = state["steps_recorded"]
