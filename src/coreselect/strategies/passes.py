"""A shuffled pass over positions, taken a batch at a time: the cursor that epoch strategies, CREST's region and
the online candidate stream each keep, with what the steps to come will take (for reading ahead) and its state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


def _empty() -> Tensor:
    return torch.zeros(0, dtype=torch.long)


@dataclass
class ShuffledPass:
    """Positions ``0 … size − 1`` in a random order (drawn by :meth:`shuffle` from the strategy's generator) and
    how many of them were taken."""

    order: Tensor = field(default_factory=_empty)
    cursor: int = 0

    @property
    def remaining(self) -> int:
        return len(self.order) - self.cursor

    def shuffle(self, size: int, generator: torch.Generator) -> None:
        """Start a new pass over ``size`` positions."""
        self.order, self.cursor = torch.randperm(size, generator=generator), 0

    def take(self, count: int) -> Tensor:
        """The next ``count`` positions (fewer at the end of the pass)."""
        positions = self.order[self.cursor : self.cursor + count]
        self.cursor += len(positions)
        return positions

    def lead_with(self, positions: Tensor) -> None:
        """Move ``positions`` to the front of the positions not yet taken, the others keeping their order."""
        rest = self.order[self.cursor :]
        self.order = torch.cat([self.order[: self.cursor], positions, rest[~torch.isin(rest, positions)]])

    def ahead(self, count: int, *, whole: bool = False) -> list[Tensor]:
        """What the takes of ``count`` left in this pass will return (``whole``: only those of ``count``)."""
        end = len(self.order) - count + 1 if whole else len(self.order)
        return [self.order[start : start + count] for start in range(self.cursor, end, count)]

    def state_dict(self) -> dict[str, Any]:
        return {"order": self.order, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        order = state["order"]  # None in checkpoints written before a pass had begun
        self.order, self.cursor = _empty() if order is None else order, state["cursor"]
