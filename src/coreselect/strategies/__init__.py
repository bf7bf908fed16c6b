"""Strategies: every selection method is a source of weighted mini-batches (see :class:`Strategy`)."""

from coreselect.strategies import (  # noqa: F401  (registers them)
    baselines,
    bayesian,
    craig,
    crest,
    glister,
    gradmatch,
    infobatch,
    loss_rank,
    online,
    stable,
    static,
)
from coreselect.strategies.epochs import EpochStrategy, Selection
from coreselect.strategies.protocol import (
    Batch,
    Budget,
    Context,
    NeedsFeatures,
    NeedsStepGradient,
    NeedsValidation,
    PlansBatches,
    ReportsMetrics,
    SelectionLog,
    SelectionRound,
    StepOutput,
    Strategy,
    budgeted,
)
from coreselect.strategies.registry import STRATEGIES, create_strategy, register, strategy_spec, validate_params

__all__ = [
    "STRATEGIES",
    "Batch",
    "Budget",
    "Context",
    "EpochStrategy",
    "NeedsFeatures",
    "NeedsStepGradient",
    "NeedsValidation",
    "PlansBatches",
    "ReportsMetrics",
    "Selection",
    "SelectionLog",
    "SelectionRound",
    "StepOutput",
    "Strategy",
    "budgeted",
    "create_strategy",
    "register",
    "strategy_spec",
    "validate_params",
]
