"""Experiments layer: run configurations, the runner, the SQLite results store and benchmark grids.
Reports (the ``report`` package) read the store; nothing here imports them."""

from coreselect.experiments.config import RunConfig
from coreselect.experiments.runner import resolve_device, run_experiment
from coreselect.experiments.store import ResultStore, StoredRun

__all__ = [
    "ResultStore",
    "RunConfig",
    "StoredRun",
    "resolve_device",
    "run_experiment",
]
