"""The share of corrupted labels among the examples a run back-propagates, counted from its batches.

Works for every strategy, online ones included (which keep no selection rounds): each step's batch indices
are looked up in the training set's noise mask. Recorded at every evaluation as the cumulative share
(``noisy_trained``), unweighted: every back-propagated example counts once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coreselect.train.callbacks import Callback

if TYPE_CHECKING:
    from torch import Tensor

    from coreselect.strategies.protocol import Batch, StepOutput
    from coreselect.train.trainer import EvalRecord, Trainer

NOISY_TRAINED = "noisy_trained"


class NoisyShare(Callback):
    """Counts corrupted labels among the back-propagated examples (see the module docstring)."""

    def __init__(self) -> None:
        self.noisy, self.seen = 0, 0
        self._mask: Tensor | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        self._mask = trainer.train_data.noise_mask.cpu()

    def on_step_end(self, trainer: Trainer, batch: Batch, out: StepOutput) -> None:
        assert self._mask is not None
        self.noisy += int(self._mask[batch.indices.cpu()].sum())
        self.seen += len(batch.indices)

    def on_evaluation(self, trainer: Trainer, record: EvalRecord) -> None:
        if self.seen:
            record.extras[NOISY_TRAINED] = self.noisy / self.seen

    def state_dict(self) -> dict[str, Any]:
        return {"noisy": self.noisy, "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.noisy, self.seen = state.get("noisy", 0), state.get("seen", 0)
