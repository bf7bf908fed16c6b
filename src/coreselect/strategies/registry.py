"""Strategies created by name, with their parameters validated."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from coreselect.errors import UnknownNameError
from coreselect.strategies.protocol import Strategy
from coreselect.strategies.proxy import ProxyRequest
from coreselect.validation import validated


class StrategyParams(BaseModel):
    """Base of every strategy's parameters: unknown names refused, strict types (no bool for a number, no number
    for a bool, no float for an integer), finite numbers only."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class NoParams(StrategyParams):
    """A strategy without parameters."""


@dataclass(frozen=True)
class StrategySpec:
    name: str
    family: str
    summary: str
    params: type[StrategyParams]
    factory: Callable[[Any], Strategy]
    full_data: bool = False  # trains on every example: the run's budget is 1 whatever is asked
    reads_training_signals: bool = False  # scores from the training-signal cache (no selection forward)

    def proxy_request(self, params: StrategyParams | None = None) -> ProxyRequest | None:
        """The proxy runs this strategy scores with under ``params`` (default: its defaults), as its class's
        ``request_for`` declares them; None when it needs none. No strategy is created."""
        request_for = getattr(self.factory, "request_for", None)
        return None if request_for is None else request_for(self.params() if params is None else params)


STRATEGIES: dict[str, StrategySpec] = {}


def register(
    name: str, *, family: str, summary: str, params: type[StrategyParams] = NoParams, full_data: bool = False,
    reads_training_signals: bool = False,
) -> Callable[[Callable[[Any], Strategy]], Callable[[Any], Strategy]]:
    """Class decorator: make a strategy creatable by ``name``; its constructor takes a ``params`` model. A class
    gets ``name`` and ``params_type`` (what its constructor defaults to) as class attributes."""

    def decorate(factory: Callable[[Any], Strategy]) -> Callable[[Any], Strategy]:
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} registered twice")
        if isinstance(factory, type):
            factory.name, factory.params_type = name, params  # type: ignore[attr-defined]
        STRATEGIES[name] = StrategySpec(name, family, summary, params, factory, full_data, reads_training_signals)
        return factory

    return decorate


def strategy_spec(name: str) -> StrategySpec:
    if name not in STRATEGIES:
        raise UnknownNameError("strategy", name, STRATEGIES)
    return STRATEGIES[name]


def validate_params(name: str, params: dict[str, Any] | None = None) -> BaseModel:
    """The validated parameter model of strategy ``name``; a clear one-line error otherwise."""
    return validated(strategy_spec(name).params, params or {}, f"parameters for strategy {name!r}")


def capabilities(name: str) -> list[str]:
    """What strategy ``name`` (with default parameters) declares it needs or offers beyond the protocol."""
    from coreselect.strategies.protocol import (
        NeedsFeatures,
        NeedsStepGradient,
        NeedsValidation,
        PlansBatches,
        ReportsMetrics,
    )

    strategy = create_strategy(name)
    declared = {
        "validation split": isinstance(strategy, NeedsValidation) and strategy.needs_validation_split,
        "proxy run": strategy_spec(name).proxy_request() is not None,
        "step features": isinstance(strategy, NeedsFeatures),
        "step gradient": isinstance(strategy, NeedsStepGradient),
        "plans batches": isinstance(strategy, PlansBatches),
        "reports metrics": isinstance(strategy, ReportsMetrics),
    }
    return [what for what, yes in declared.items() if yes]


def create_strategy(name: str, **params: Any) -> Strategy:
    """Create the strategy registered as ``name`` with validated ``params``."""
    return strategy_spec(name).factory(validate_params(name, params))
