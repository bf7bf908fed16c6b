"""Area under the margin (AUM; Pleiss et al., NeurIPS 2020), recorded as a by-product of training.

Each training step's logits give every example it saw a margin: the logit of its assigned label minus the
largest other logit. An example's AUM is the mean of its margins over the run; mislabelled and ambiguous
examples have the lowest (negative while another class keeps winning). CCS's reference code drops its hardest
share by AUM whatever score it then stratifies; forgetting does so here (``ccs_drop_by``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from coreselect.train.callbacks import ExampleStatisticRecorder

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

    def observe(self, indices: Tensor, logits: Tensor, targets: Tensor) -> None:
        """One training step's presentation of ``indices`` with their logits."""
        self.update(indices, margins(logits.float(), targets))

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


class AreaUnderMargin(ExampleStatisticRecorder):
    """Accumulates the training examples' margins from each step's logits; see :class:`MarginAccumulator`.

    After training, :meth:`example_scores` gives ``{"aum": scores}``.
    """

    name = AUM

    def create(self, n: int) -> MarginAccumulator:
        return MarginAccumulator(n)
