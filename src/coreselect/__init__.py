"""coreselect: train on the data that matters.

Every selection method is a :class:`~coreselect.strategies.Strategy`, a source of weighted mini-batches
that drops into any training loop; :class:`~coreselect.train.Trainer` drives one under a fair budget.
"""

from coreselect.data import DataSplits, Examples, InMemoryDataset, StreamedDataset, load_dataset, prepare_splits
from coreselect.errors import CoreselectError
from coreselect.models import PenultimateFeatures, create_model
from coreselect.strategies import (
    STRATEGIES,
    Batch,
    Budget,
    Context,
    StepOutput,
    Strategy,
    budgeted,
    create_strategy,
)
from coreselect.train import TrainConfig, Trainer
from coreselect.train.proxies import provide_proxy

__version__ = "0.1.0"

__all__ = [
    "STRATEGIES",
    "Batch",
    "Budget",
    "Context",
    "CoreselectError",
    "DataSplits",
    "Examples",
    "InMemoryDataset",
    "PenultimateFeatures",
    "StepOutput",
    "Strategy",
    "StreamedDataset",
    "TrainConfig",
    "Trainer",
    "budgeted",
    "create_model",
    "create_strategy",
    "load_dataset",
    "prepare_splits",
    "provide_proxy",
]
