"""Training layer: the budgeted trainer, schedules, evaluation, timing, callbacks and checkpoints."""

from coreselect.train.callbacks import Callback
from coreselect.train.collapse import Collapse, find_collapse
from coreselect.train.config import TrainConfig
from coreselect.train.evaluation import Evaluation, evaluate
from coreselect.train.forgetting import FORGETTING, ForgettingCounter, ForgettingEvents
from coreselect.train.gradient_error import GradientError, mean_gradient
from coreselect.train.margins import AUM, AreaUnderMargin, MarginAccumulator
from coreselect.train.schedule import lr_factor, make_optimizer
from coreselect.train.timing import Timings
from coreselect.train.trainer import EvalRecord, Trainer, TrainResult

__all__ = [
    "AUM",
    "FORGETTING",
    "AreaUnderMargin",
    "Callback",
    "Collapse",
    "EvalRecord",
    "Evaluation",
    "ForgettingCounter",
    "ForgettingEvents",
    "GradientError",
    "MarginAccumulator",
    "Timings",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate",
    "find_collapse",
    "lr_factor",
    "make_optimizer",
    "mean_gradient",
]
