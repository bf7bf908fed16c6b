"""Forgetting events (Toneva et al., ICLR 2019), recorded as a by-product of training.

An example is *forgotten* when a training step classifies it wrongly after the previous step that saw it
had classified it correctly. Its forgetting score is the number of such events; examples never classified
correctly get a score above every observed one (the hardest). The counts come from the logits the training
step computed anyway, in one batched update per step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from coreselect.train.callbacks import Callback

if TYPE_CHECKING:
    from coreselect.strategies.protocol import Batch, StepOutput
    from coreselect.train.trainer import Trainer

FORGETTING = "forgetting"
_UNSEEN = -1


class ForgettingCounter:
    """Per-example forgetting events over the presentations of ``n`` examples."""

    def __init__(self, n: int) -> None:
        self.last_correct = torch.full((n,), _UNSEEN, dtype=torch.int8)
        self.forgets = torch.zeros(n, dtype=torch.int32)
        self.learned = torch.zeros(n, dtype=torch.bool)

    def update(self, indices: Tensor, correct: Tensor) -> None:
        """One presentation of ``indices`` with their correctness (an example twice in one batch counts once,
        its last occurrence winning)."""
        indices, correct = indices.cpu(), correct.cpu().to(torch.int8)
        forgotten = (self.last_correct[indices] == 1) & (correct == 0)
        self.forgets.index_add_(0, indices[forgotten], torch.ones(int(forgotten.sum()), dtype=torch.int32))
        self.last_correct[indices] = correct
        self.learned[indices[correct.bool()]] = True

    @property
    def seen(self) -> Tensor:
        return self.last_correct != _UNSEEN

    def scores(self) -> Tensor:
        """Forgetting counts as floats; never-learned examples score max + 1, unseen ones NaN."""
        scores = self.forgets.float()
        never = self.seen & ~self.learned
        scores[never] = float(self.forgets.max()) + 1.0 if len(scores) else 0.0
        scores[~self.seen] = float("nan")
        return scores

    def state_dict(self) -> dict[str, Tensor]:
        return {"last_correct": self.last_correct, "forgets": self.forgets, "learned": self.learned}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.last_correct, self.forgets, self.learned = state["last_correct"], state["forgets"], state["learned"]


class ForgettingEvents(Callback):
    """Counts forgetting events of the training examples from each step's logits; see :class:`ForgettingCounter`.

    After training, :meth:`example_scores` gives ``{"forgetting": scores}`` (the runner stores it).
    """

    def __init__(self) -> None:
        self.counter: ForgettingCounter | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        if self.counter is None:
            self.counter = ForgettingCounter(len(trainer.train_data))

    def on_step_end(self, trainer: Trainer, batch: Batch, out: StepOutput) -> None:
        assert self.counter is not None
        targets = trainer.train_data.targets[batch.indices.to(trainer.train_data.device)]
        self.counter.update(batch.indices, out.logits.argmax(1) == targets)

    def example_scores(self) -> dict[str, Tensor]:
        return {} if self.counter is None else {FORGETTING: self.counter.scores()}

    def state_dict(self) -> dict[str, Any]:
        return {} if self.counter is None else self.counter.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.counter = ForgettingCounter(0)
            self.counter.load_state_dict(state)
