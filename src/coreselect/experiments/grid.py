"""Benchmark grids: datasets × models × strategies × budgets × noise × imbalance × seeds, declared in a
TOML or YAML file (or a named preset shipped with the package), validated, expanded into run
configurations and run — finished runs read back from the store, so a killed benchmark resumes where it
stopped, and several runs in parallel processes when the cores allow.

A file holds one or more grids (``[[grids]]`` tables); every grid is a full cross product::

    description = "what this benchmark reproduces"
    store = "runs/mine.db"

    [[grids]]
    strategies = ["full", "random", {name = "crest", params = {tau = 0.3}}]
    budgets = [0.1]
    seeds = [0, 1, 2]
    val_fraction = 0.1
    train = {epochs = 20}
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from coreselect.errors import InvalidInputError, UnknownNameError
from coreselect.experiments.config import RunConfig, setting_label
from coreselect.experiments.store import ResultStore
from coreselect.experiments.supervise import Finished, Interrupted, run_supervised
from coreselect.notes import print_notes_to_stderr
from coreselect.strategies.registry import STRATEGIES
from coreselect.validation import validated

FRONTIER_BUDGETS = (0.05, 0.1, 0.2, 0.3, 0.5)  # random's budgets on the wall-clock frontier (full data closes it);
# 0.05 so that a method at budget 0.1 no faster than random at 0.1 still falls inside it


class StrategyEntry(BaseModel):
    """A strategy with non-default parameters (a bare name in the file means the defaults)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class Grid(BaseModel):
    """One cross product of runs; list-valued fields are axes, the others are shared by every run."""

    model_config = ConfigDict(extra="forbid")

    datasets: list[str] = Field(default_factory=lambda: ["fashion-mnist"], min_length=1)
    data_root: str | None = None
    models: list[str] = Field(default_factory=lambda: ["lenet"], min_length=1)
    strategies: list[str | StrategyEntry] = Field(min_length=1)
    budgets: list[float] = Field(default_factory=lambda: [0.1], min_length=1)
    label_noise: list[float] = Field(default_factory=lambda: [0.0], min_length=1)
    noise_kind: Literal["symmetric", "uniform", "pair"] = "symmetric"
    imbalance: list[float] = Field(default_factory=lambda: [1.0], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    val_fraction: float = 0.0
    holdout_fraction: float = 0.0
    num_classes: int | None = None
    threads: int | None = None
    workers: int | None = Field(None, ge=0, description="read the data through a DataLoader with this many worker "
                                "processes (0: the run's own process); unset: in memory. The runs are the same")
    train: dict[str, Any] = Field(default_factory=dict, description="training settings shared by the grid "
                                  "(epochs, optimizer, lr, schedule, batch_size, ...)")
    gradient_error: int | None = Field(None, description="training examples of the reference gradient for the "
                                       "gradient-error curve (0: all; unset: off)")
    gradient_error_strategies: list[str] = Field(default_factory=lambda: ["craig", "gradmatch", "glister", "crest",
                                                                          "stable"],
                                                 description="strategies whose gradient error is recorded")
    frontier: bool = Field(False, description="add random's wall-clock frontier: random at budgets "
                           f"{', '.join(f'{b:g}' for b in FRONTIER_BUDGETS)} and full data, per setting and seed")


class BenchSpec(BaseModel):
    """A benchmark: its grids, the store it writes by default and what it reproduces."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    store: str | None = None
    targets: list[float] = Field(default_factory=list, description="accuracies for the time-to-target table")
    grids: list[Grid] = Field(min_length=1)


@dataclass(frozen=True)
class PlannedRun:
    """One run of a benchmark and how it is run."""

    config: RunConfig
    gradient_error: int | None = None


PRESETS_PACKAGE = "coreselect.experiments.presets"


def preset_names() -> list[str]:
    """The presets shipped with the package."""
    return sorted(p.name.removesuffix(".toml") for p in resources.files(PRESETS_PACKAGE).iterdir()
                  if p.name.endswith(".toml"))


def load_preset(name: str) -> BenchSpec:
    """The named preset (``coreselect bench --preset NAME``)."""
    if name not in preset_names():
        raise UnknownNameError("preset", name, preset_names())
    text = resources.files(PRESETS_PACKAGE).joinpath(f"{name}.toml").read_text()
    return _spec(tomllib.loads(text), f"preset {name}")


def load_bench_file(path: str | Path) -> BenchSpec:
    """A benchmark declared in a ``.toml``, ``.yaml`` or ``.yml`` file."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"no benchmark file at {path}; write one (see `coreselect bench --help`) or "
                                f"use --preset with one of: {', '.join(preset_names())}")
    if path.suffix == ".toml":
        try:
            values = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise InvalidInputError(f"{path} is not valid TOML: {err}") from None
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            values = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise InvalidInputError(f"{path} is not valid YAML: {err}") from None
    else:
        raise InvalidInputError(f"{path}: benchmark files end in .toml, .yaml or .yml")
    if not isinstance(values, dict):
        raise InvalidInputError(f"{path} must hold a table with a `grids` list")
    return _spec(values, str(path))


def _spec(values: dict[str, Any], where: str) -> BenchSpec:
    return validated(BenchSpec, values, f"benchmark {where}")


def narrowed(spec: BenchSpec, *, grids: list[int] | None = None, seeds: list[int] | None = None) -> BenchSpec:
    """``spec`` with only its grids numbered ``grids`` (from 1, in the order declared; each with its own frontier)
    and with ``seeds`` in place of every grid's seeds; ``None`` or empty keeps them all."""
    chosen = spec.grids
    if grids:
        outside = sorted({g for g in grids if not 1 <= g <= len(spec.grids)})
        if outside:
            raise InvalidInputError(f"grid {outside[0]} is not in this benchmark: it declares {len(spec.grids)} "
                                    f"grid(s); give numbers from 1 to {len(spec.grids)}")
        chosen = [spec.grids[g - 1] for g in sorted(set(grids))]
    if seeds:
        chosen = [g.model_copy(update={"seeds": seeds}) for g in chosen]
    return spec.model_copy(update={"grids": chosen})


def expand(spec: BenchSpec) -> list[PlannedRun]:
    """Every run of ``spec``, each once (full-data strategies once per setting whatever the budgets),
    ordered by setting, then seed, so that an interrupted benchmark leaves whole comparisons behind."""
    planned: dict[str, PlannedRun] = {}
    for grid in spec.grids:
        entries = [(StrategyEntry(name=s) if isinstance(s, str) else s, budget)
                   for s in grid.strategies for budget in grid.budgets]
        for entry, _ in entries:
            if entry.name not in STRATEGIES:
                raise UnknownNameError("strategy", entry.name, STRATEGIES)
        if grid.frontier:
            entries += [(StrategyEntry(name="random"), b) for b in FRONTIER_BUDGETS]
            entries.append((StrategyEntry(name="full"), 1.0))
        axes = itertools.product(grid.datasets, grid.models, grid.label_noise, grid.imbalance, grid.seeds, entries)
        for dataset, model, noise, imbalance, seed, (entry, budget) in axes:
            config = RunConfig.create(dataset=dataset, data_root=grid.data_root, model=model, strategy=entry.name,
                                      params=entry.params, seed=seed, val_fraction=grid.val_fraction,
                                      label_noise=noise, noise_kind=grid.noise_kind, imbalance=imbalance,
                                      holdout_fraction=grid.holdout_fraction, num_classes=grid.num_classes,
                                      threads=grid.threads, workers=grid.workers,
                                      train={**grid.train, "budget": budget})
            gradient_error = grid.gradient_error if entry.name in grid.gradient_error_strategies else None
            planned.setdefault(config.run_id, PlannedRun(config, gradient_error))
    return list(planned.values())


@dataclass(frozen=True)
class RunOutcome:
    """How one planned run ended."""

    run: PlannedRun
    test_accuracy: float | None
    error: str | None = None
    skipped: bool = False


def _run_one(config_json: str, store_path: str, device: str, gradient_error: int | None,
             threads: int) -> tuple[float | None, str | None]:
    """Worker: one run in its own process (picklable arguments only)."""
    import torch

    from coreselect.errors import CoreselectError
    from coreselect.experiments.runner import run_experiment

    if multiprocessing.parent_process() is not None:  # a benchmark's worker: its notes go to stderr too
        print_notes_to_stderr()
    torch.set_num_threads(threads)
    config = RunConfig.model_validate_json(config_json)
    try:
        run = run_experiment(config, ResultStore(store_path), device=device, progress_bar=False,
                             gradient_error_sample=gradient_error)
    except CoreselectError as err:
        return None, str(err)
    return run.test_accuracy, None


def run_grid(runs: list[PlannedRun], store: ResultStore, *, jobs: int = 1, device: str = "auto",
             on_outcome: Callable[[RunOutcome], None] | None = None) -> list[RunOutcome]:
    """Run every planned run not finished in ``store``; ``jobs`` processes at a time, each with an equal share
    of the cores this process may run on. A run that fails with a user error is reported and the others go on.
    Interrupted (Ctrl-C), the runs in flight are stopped and marked ``interrupted``; their checkpoints stay, so
    running the grid again resumes them."""
    if jobs < 1:
        raise InvalidInputError(f"jobs must be at least 1, got {jobs}")
    outcomes: list[RunOutcome] = []

    def record(outcome: RunOutcome) -> None:
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    pending = []
    for run in runs:
        stored = store.get(run.config.run_id)
        if stored is not None and stored.status == "done":
            record(RunOutcome(run, stored.test_accuracy, skipped=True))
        else:
            pending.append(run)
    threads = max(1, len(os.sched_getaffinity(0)) // jobs)  # the cores this process may use (taskset, cgroups)
    if jobs == 1:
        for run in pending:
            try:
                accuracy, error = _run_one(run.config.model_dump_json(), str(store.path), device,
                                           run.gradient_error, threads)
            except KeyboardInterrupt:
                store.interrupt([run.config.run_id])
                raise
            record(RunOutcome(run, accuracy, error))
        return outcomes

    def finished(result: Finished) -> None:
        run: PlannedRun = result.key
        if result.crashed is not None:
            message = f"its worker process ended with exit code {result.crashed}"
            store.fail(run.config, message)
            record(RunOutcome(run, None, message))
        else:
            record(RunOutcome(run, *result.value))

    tasks = [(run, _run_one, (run.config.model_dump_json(), str(store.path), device, run.gradient_error, threads))
             for run in pending]
    try:
        run_supervised(tasks, jobs, finished)
    except Interrupted as stop:
        store.interrupt([run.config.run_id for run in stop.in_flight])
        raise
    return outcomes


def describe(outcome: RunOutcome) -> str:
    """One line for a finished run: setting, seed, method, budget and test accuracy (or its error)."""

    c = outcome.run.config
    state = f"FAILED: {outcome.error}" if outcome.error else f"{100 * (outcome.test_accuracy or 0.0):.2f}%"
    return f"{setting_label(c.setting_key)} · seed {c.seed} · {c.method_label} b={c.train.budget:g}: {state}"


def run_preset(name: str, *, seeds: list[int] | None = None, jobs: int = 1, store: str | Path | None = None,
               echo: Callable[[str], None] = print) -> tuple[BenchSpec, ResultStore, list[RunOutcome]]:
    """Run the named preset (only ``seeds`` if given) into ``store`` (default: the preset's), echoing each run."""
    spec = load_preset(name)
    results = ResultStore(store or spec.store or f"runs/{name}.db")
    planned = [r for r in expand(spec) if seeds is None or r.config.seed in seeds]
    outcomes = run_grid(planned, results, jobs=jobs, on_outcome=lambda o: echo(describe(o)))
    return spec, results, outcomes
