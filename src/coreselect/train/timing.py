"""Wall-clock split into selection, training and evaluation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch

SECTIONS = ("selection", "training", "evaluation")


@dataclass
class Timings:
    """Seconds spent in each section; the device is synchronised at section boundaries on a GPU."""

    selection: float = 0.0
    training: float = 0.0
    evaluation: float = 0.0

    @property
    def total(self) -> float:
        return self.selection + self.training + self.evaluation

    @property
    def learning(self) -> float:
        """Selection plus training: the cost of the method, evaluation excluded."""
        return self.selection + self.training

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @contextmanager
    def section(self, name: str, device: torch.device) -> Iterator[None]:
        if name not in SECTIONS:
            raise ValueError(f"unknown timing section {name!r}")
        sync = device.type == "cuda"
        if sync:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if sync:
                torch.cuda.synchronize(device)
            setattr(self, name, getattr(self, name) + time.perf_counter() - start)
