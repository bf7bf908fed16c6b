"""Experiments layer: run configurations, the SQLite results store, and reports."""

from coreselect.experiments.config import RunConfig
from coreselect.experiments.report import MethodSummary, format_table, report, summarise
from coreselect.experiments.runner import resolve_device, run_experiment
from coreselect.experiments.store import ResultStore, StoredRun

__all__ = [
    "MethodSummary",
    "ResultStore",
    "RunConfig",
    "StoredRun",
    "format_table",
    "report",
    "resolve_device",
    "run_experiment",
    "summarise",
]
