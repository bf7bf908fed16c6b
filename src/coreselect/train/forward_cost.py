"""The cost floor of selection: seconds of one no-grad forward per example, measured on the run's own model,
data and device, so that a method's selection seconds can be set against the forwards it asked for."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from coreselect.data.examples import Examples
from coreselect.signals import forward_in_batches

PROBE_EXAMPLES = 1024
PROBE_REPEATS = 3
RECHECK_REPEATS = 1  # the probes at evaluations: one timed pass after the warm-up (their median is the value)


def forward_seconds_per_example(model: nn.Module, data: Examples, *, batch_size: int = 256,
                                examples: int = PROBE_EXAMPLES, repeats: int = PROBE_REPEATS,
                                dtype: torch.dtype | None = None) -> float:
    """Seconds of an eval-mode, no-grad forward per example (the path selection forwards take, autocast to
    ``dtype`` if given), the fastest of ``repeats`` timed passes over the first ``examples`` training examples
    after one warm-up pass. Draws no random numbers and leaves the model's mode and weights as they were."""
    rows = torch.arange(min(examples, len(data)))
    if len(rows) == 0:
        return 0.0
    device = next(model.parameters()).device
    # warm-up: allocations, kernel selection
    forward_in_batches(model, data, indices=rows, batch_size=batch_size, dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        forward_in_batches(model, data, indices=rows, batch_size=batch_size, dtype=dtype)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best / len(rows)


@dataclass
class ForwardCost:
    """A run's probes of :func:`forward_seconds_per_example`: one before training and one at each evaluation
    (outside the timed sections; data read on demand, before training only). Its value is their median, the
    forward's speed as the run's steps met it: a probe taken while another process held the machine moves it no
    more than any other sample, where a single probe before training set a run's whole floor (two jobs on a 2-core
    CPU: 11 of 93 runs' probes read 1.4–1.8× their store's median)."""

    probes: list[float] = field(default_factory=list)

    @property
    def per_example(self) -> float | None:
        """The median probe, in seconds per example (None before the first)."""
        return statistics.median(self.probes) if self.probes else None
