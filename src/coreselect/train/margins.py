"""Area under the margin (AUM; Pleiss et al., NeurIPS 2020), recorded as a by-product of training.

Each training step's logits give every example it saw a margin: the logit of its assigned label minus the
largest other logit. An example's AUM is the mean of its margins over the run; mislabelled and ambiguous
examples have the lowest (negative while another class keeps winning). CCS's reference code drops its hardest
share by AUM whatever score it then stratifies; forgetting does so here (``ccs_drop_by``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from coreselect.train.callbacks import Callback

if TYPE_CHECKING:
    from coreselect.strategies.protocol import Batch, StepOutput
    from coreselect.train.trainer import Trainer

AUM = "aum"


def margins(logits: Tensor, targets: Tensor) -> Tensor:
    """Per row, the logit of ``targets`` minus the largest other logit."""
    assigned = logits.gather(1, targets[:, None]).squeeze(1)
    others = logits.scatter(1, targets[:, None], float("-inf")).amax(1)
    return assigned - others


class MarginAccumulator:
    """Running mean of each of ``n`` examples' margins over its presentations."""

    def __init__(self, n: int) -> None:
        self.total = torch.zeros(n, dtype=torch.float64)
        self.count = torch.zeros(n, dtype=torch.int32)

    def update(self, indices: Tensor, batch_margins: Tensor) -> None:
        """One presentation of ``indices`` with their margins (an example twice in a batch counts twice)."""
        indices = indices.cpu()
        self.total.index_add_(0, indices, batch_margins.detach().cpu().double())
        self.count.index_add_(0, indices, torch.ones(len(indices), dtype=torch.int32))

    def scores(self) -> Tensor:
        """Mean margins as floats; NaN for examples never presented."""
        return (self.total / self.count).float()  # 0 / 0 is NaN

    def state_dict(self) -> dict[str, Tensor]:
        return {"total": self.total, "count": self.count}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.total, self.count = state["total"], state["count"]


class AreaUnderMargin(Callback):
    """Accumulates the training examples' margins from each step's logits; see :class:`MarginAccumulator`.

    After training, :meth:`example_scores` gives ``{"aum": scores}``.
    """

    def __init__(self) -> None:
        self.accumulator: MarginAccumulator | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        if self.accumulator is None:
            self.accumulator = MarginAccumulator(len(trainer.train_data))

    def on_step_end(self, trainer: Trainer, batch: Batch, out: StepOutput) -> None:
        assert self.accumulator is not None
        targets = trainer.train_data.targets[batch.indices.to(trainer.train_data.device)]
        self.accumulator.update(batch.indices, margins(out.logits.detach().float(), targets.to(out.logits.device)))

    def example_scores(self) -> dict[str, Tensor]:
        return {} if self.accumulator is None else {AUM: self.accumulator.scores()}

    def state_dict(self) -> dict[str, Any]:
        return {} if self.accumulator is None else self.accumulator.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.accumulator = MarginAccumulator(0)
            self.accumulator.load_state_dict(state)
