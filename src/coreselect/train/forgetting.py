"""Forgetting events (Toneva et al., ICLR 2019), recorded as a by-product of training.

An example is *forgotten* when a training step classifies it wrongly after the previous step that saw it
had classified it correctly. Its forgetting score is the number of such events; examples never classified
correctly get a score above every observed one (the hardest). The counts come from the logits the training
step computed anyway, in one batched update per step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from coreselect.train.callbacks import ExampleStatisticRecorder

FORGETTING = "forgetting"
_UNSEEN = -1


class ForgettingCounter:
    """Per-example forgetting events over the presentations of ``n`` examples."""

    def __init__(self, n: int) -> None:
        self.last_correct = torch.full((n,), _UNSEEN, dtype=torch.int8)
        self.forgets = torch.zeros(n, dtype=torch.int32)
        self.learned = torch.zeros(n, dtype=torch.bool)

    def observe(self, indices: Tensor, logits: Tensor, targets: Tensor) -> None:
        """One training step's presentation of ``indices``, correct where the logits' argmax is the target."""
        self.update(indices, logits.argmax(1) == targets)

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


class ForgettingEvents(ExampleStatisticRecorder):
    """Counts forgetting events of the training examples from each step's logits; see :class:`ForgettingCounter`.

    After training, :meth:`example_scores` gives ``{"forgetting": scores}`` (the runner stores it).
    """

    name = FORGETTING

    def create(self, n: int) -> ForgettingCounter:
        return ForgettingCounter(n)
