"""Shuffled passes over a selection: the base of every strategy that trains on a (re)selected subset."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from coreselect.strategies.base import SeededStrategy
from coreselect.strategies.passes import ShuffledPass
from coreselect.strategies.protocol import Batch, StepOutput
from coreselect.strategies.registry import StrategyParams


@dataclass(frozen=True)
class Selection:
    """Indices into the training set with optional per-example loss weights (mean 1 by convention)."""

    indices: Tensor
    weights: Tensor | None = None


class EpochStrategy(SeededStrategy, ABC):
    """Cuts each pass over the current selection into shuffled mini-batches of ``ctx.batch_size``.

    Subclasses implement :meth:`select`, called at the start of every pass; returning ``None`` keeps the
    previous selection. The last batch of a pass may be smaller.
    """

    name = "epoch-strategy"

    def __init__(self, params: StrategyParams | None = None) -> None:
        super().__init__(params)
        self._epoch = 0
        self._selection: Selection | None = None
        self._pass = ShuffledPass()

    @property
    def normalises_batches(self) -> bool:
        """Whether each batch's weights are rescaled to mean 1 (else they keep the selection's scale)."""
        return False

    @abstractmethod
    def select(self, epoch: int) -> Selection | None:
        """The selection for pass ``epoch`` (0-based), or None to keep the previous one."""

    def observe(self, batch: Batch, out: StepOutput) -> None:
        """Per-example outputs of the step that used ``batch``; ignored unless a subclass needs them."""

    def _begin_epoch(self) -> None:
        selection = self.select(self._epoch)
        if selection is not None:
            self._selection = selection
        if self._selection is None:
            raise RuntimeError(f"{type(self).__name__}.select returned None before any selection")
        self._pass.shuffle(len(self._selection.indices), self.generator)
        self._epoch += 1

    def batches(self) -> Iterator[Batch]:
        batch_size = self.context.batch_size
        while True:
            if self._selection is None or self._pass.remaining <= 0:
                self._begin_epoch()
            assert self._selection is not None
            positions = self._pass.take(batch_size)
            weights = self._selection.weights
            batch = Batch(self._selection.indices[positions], None if weights is None else weights[positions])
            yield batch.normalised() if self.normalises_batches else batch

    def planned(self) -> list[Tensor]:
        """Indices of the rest of the current pass's batches (the next selection comes after them)."""
        if self._selection is None:
            return []
        return [self._selection.indices[positions] for positions in self._pass.ahead(self.context.batch_size)]

    def state_dict(self) -> dict[str, Any]:
        sel = self._selection
        return {
            "generator": self.generator.get_state(),
            "epoch": self._epoch,
            **self._pass.state_dict(),
            "selection": None if sel is None else {"indices": sel.indices, "weights": sel.weights},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self._epoch = state["epoch"]
        self._pass.load_state_dict(state)
        sel = state["selection"]
        self._selection = None if sel is None else Selection(sel["indices"], sel["weights"])
