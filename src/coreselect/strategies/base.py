"""What every built-in strategy shares: its context once set up, and its own seeded random stream."""

from __future__ import annotations

from typing import Any

import torch

from coreselect.seeding import derive_seed
from coreselect.strategies.protocol import Context
from coreselect.strategies.registry import NoParams, StrategyParams


class SeededStrategy:
    """Holds its parameters, the :class:`Context` given to :meth:`setup` and a generator seeded from the run seed
    and the strategy's name (so every strategy draws from its own stream). ``name`` and ``params_type`` are set
    by :func:`~coreselect.strategies.registry.register`; without parameters a strategy takes their defaults."""

    name = "strategy"
    params_type: type[StrategyParams] = NoParams
    params: Any

    def __init__(self, params: StrategyParams | None = None) -> None:
        self.params = self.params_type() if params is None else params
        self.ctx: Context | None = None
        self.generator = torch.Generator()

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.generator.manual_seed(derive_seed(ctx.seed, f"strategy:{self.name}"))

    @property
    def context(self) -> Context:
        if self.ctx is None:
            raise RuntimeError(f"call {type(self).__name__}.setup(ctx) before drawing batches")
        return self.ctx
