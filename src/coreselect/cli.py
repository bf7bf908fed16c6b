"""The ``coreselect`` command line: train one configuration, report the store, list the methods."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from tabulate import tabulate

from coreselect.errors import CoreselectError, InvalidInputError
from coreselect.notes import print_notes_to_stderr

app = typer.Typer(
    help="Train on the data that matters: coreset and online batch selection, compared fairly.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

STORE_HELP = "SQLite results store"


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"strategy parameter {pair!r} is not KEY=VALUE; write e.g. --param select_every=2")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _without_nproc(args: list[str]) -> list[str]:
    """The command's arguments without ``--nproc N`` / ``--nproc=N`` (the workers run one process each)."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept


@app.command()
def train(
    dataset: Annotated[
        str, typer.Option(help="fashion-mnist, idx, cifar10, cifar100, npz, imagefolder")
    ] = "fashion-mnist",
    model: Annotated[str, typer.Option(help="mlp, lenet, cnn, resnet20, resnet18")] = "lenet",
    strategy: Annotated[str, typer.Option(help="a name from `coreselect methods`")] = "random",
    budget: Annotated[float, typer.Option(help="fraction of full training's back-propagated examples")] = 1.0,
    epochs: Annotated[int, typer.Option(help="epochs of the full run the budget is a fraction of")] = 20,
    seed: Annotated[int, typer.Option()] = 0,
    store: Annotated[Path, typer.Option(help=STORE_HELP)] = Path("runs/runs.db"),
    param: Annotated[list[str], typer.Option("--param", "-p", help="strategy parameter KEY=VALUE")] = [],  # noqa: B006
    data_root: Annotated[str | None, typer.Option(help="folder of the dataset's files")] = None,
    batch_size: Annotated[int, typer.Option()] = 128,
    optimizer: Annotated[str, typer.Option(help="sgd or adamw")] = "sgd",
    lr: Annotated[float, typer.Option(help="peak learning rate")] = 0.1,
    momentum: Annotated[float, typer.Option()] = 0.9,
    weight_decay: Annotated[float, typer.Option()] = 5e-4,
    schedule: Annotated[str, typer.Option(help="onecycle, cosine, step, constant")] = "onecycle",
    val_fraction: Annotated[float, typer.Option(help="stratified validation share of the training set")] = 0.0,
    label_noise: Annotated[float, typer.Option(help="share of training labels corrupted")] = 0.0,
    noise_kind: Annotated[str, typer.Option(help="symmetric, uniform or pair")] = "symmetric",
    imbalance: Annotated[float, typer.Option(help="long-tail ratio n_max / n_min")] = 1.0,
    holdout: Annotated[
        float, typer.Option(help="stratified share of the training set held out for irreducible-loss models")
    ] = 0.0,
    eval_points: Annotated[int, typer.Option(help="evaluations (and checkpoints) over the run")] = 20,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, ...")] = "auto",
    rerun: Annotated[bool, typer.Option(help="train again even if the store has this run")] = False,
    gradient_error: Annotated[
        int | None,
        typer.Option(help="record the selection's gradient error at each evaluation, on N training examples (0: all)"),
    ] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    nproc: Annotated[
        int, typer.Option(help="data-parallel processes on this machine (torchrun; gloo on CPU, nccl on GPUs)")
    ] = 1,
    num_classes: Annotated[
        int | None, typer.Option(help="class count when the data declares none (labels 0..N-1)")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="CPU threads to compute with (results depend on it; default: the cores available)"),
    ] = None,
    augment: Annotated[
        str, typer.Option(help="augmentation of training batches (selection forwards never see it): none, crop-flip")
    ] = "none",
    precision: Annotated[str, typer.Option(help="fp32, or bf16 autocast for training and selection forwards, or "
                                                "auto: bf16 where the device computes it natively")] = "fp32",
    selection_precision: Annotated[
        str | None, typer.Option(help="fp32, bf16 or auto for selection alone (default: --precision); bf16 forwards "
                                      "about 1.6x faster on a CPU with AMX, many times slower on one without native "
                                      "bf16 (auto: bf16 only where native)")
    ] = None,
    clip_norm: Annotated[
        float | None, typer.Option(help="clip each step's gradient to this global L2 norm (default: no clipping)")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="read the data on demand through a DataLoader with N worker processes (0: this process) "
                          "instead of holding it in memory; the run is the same"),
    ] = None,
) -> None:
    """Train one configuration and store it; re-running an interrupted command resumes it."""
    from coreselect import distributed
    from coreselect.experiments import ResultStore, RunConfig, run_experiment

    config = RunConfig.create(
        dataset=dataset, data_root=data_root, model=model, strategy=strategy, params=_parse_params(param),
        seed=seed, val_fraction=val_fraction, label_noise=label_noise, noise_kind=noise_kind, imbalance=imbalance,
        holdout_fraction=holdout, num_classes=num_classes, threads=threads, workers=workers,
        train={"epochs": epochs, "budget": budget, "batch_size": batch_size, "optimizer": optimizer, "lr": lr,
               "momentum": momentum, "weight_decay": weight_decay, "schedule": schedule, "eval_points": eval_points,
               "augment": augment, "precision": precision, "clip_norm": clip_norm,
               "selection_precision": selection_precision},
    )
    if nproc != 1 and not distributed.launched_by_torchrun():  # the configuration is valid: start the job
        raise typer.Exit(distributed.launch(nproc, _without_nproc(sys.argv[1:]), device))
    group, rank_device = distributed.init_from_environment(device)
    if budget != config.train.budget and group.is_main:
        typer.echo(f"note: {strategy} trains on every example; budget set to {config.train.budget:g}", err=True)
    results = ResultStore(store)
    before = results.get(config.run_id)
    try:
        with _resumable():
            try:
                run = run_experiment(config, results, device=str(rank_device), progress_bar=progress, rerun=rerun,
                                     gradient_error_sample=gradient_error)
            except KeyboardInterrupt:
                if group.is_main:
                    results.interrupt([config.run_id])
                raise
    finally:
        distributed.shutdown()
    if not group.is_main:
        return
    done_before = before is not None and before.status == "done" and not rerun
    typer.echo(
        f"{config.method_label} budget={config.train.budget:g} seed={config.seed}: "
        f"test accuracy {100 * (run.test_accuracy or 0):.2f}%, selection {run.selection_s or 0:.1f}s, "
        f"training {run.training_s or 0:.1f}s{' (already in the store)' if done_before else ''} [run {run.run_id}]"
    )


@app.command()
def report(
    store: Annotated[Path, typer.Option(help=STORE_HELP)] = Path("runs/runs.db"),
    fmt: Annotated[
        str, typer.Option("--format", help="any tabulate format: github, plain, latex, html, ...")
    ] = "github",
    target: Annotated[
        list[float] | None, typer.Option(help="also show epochs to this test accuracy (a fraction; repeatable)")
    ] = None,
    relative: Annotated[bool, typer.Option(help="targets are fractions of the full-data accuracy")] = False,
    out: Annotated[
        Path | None, typer.Option(help="also write the report (report.md, report.html, plots) into this folder")
    ] = None,
) -> None:
    """Print accuracy, relative error against full data, wall-clock and speed-up from the store."""
    from coreselect.experiments import ResultStore
    from coreselect.report import report as make_report
    from coreselect.report.tables import time_to_target_table

    results = ResultStore.for_reading(store)
    sections = [make_report(results, tablefmt=fmt)]
    if target:
        if any(not 0 < t <= 1 for t in target):
            raise InvalidInputError(f"targets are accuracies in (0, 1], got {target}")
        sections.append("Epochs to target accuracy (mean over the seeds that reached it):\n"
                        + time_to_target_table(results, results.runs(status="done"), target, relative=relative,
                                               tablefmt=fmt))
    typer.echo("\n\n".join(sections))
    if out is not None:
        from coreselect.report.page import write_report

        written = write_report(results, out, targets=target or [], relative=relative)
        typer.echo(f"\nwrote {', '.join(str(p) for p in written)}")


@app.command()
def bench(
    preset: Annotated[
        str | None, typer.Option(help="a shipped benchmark: demo, crest-table, noise, online, sizes, clock")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="a benchmark file (.toml / .yaml) declaring grids")] = None,
    store: Annotated[Path | None, typer.Option(help=f"{STORE_HELP} (default: the benchmark's own)")] = None,
    jobs: Annotated[int, typer.Option(help="runs in parallel processes (the CPU threads are shared out)")] = 1,
    seeds: Annotated[list[int] | None, typer.Option("--seed", help="run only these seeds (repeatable)")] = None,
    grids: Annotated[list[int] | None, typer.Option("--grid", help="run only these grids of the benchmark, numbered "
                                                    "from 1 as declared (repeatable)")] = None,
    out: Annotated[Path | None, typer.Option(help="report folder (default: next to the store)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, ...")] = "auto",
    dry_run: Annotated[bool, typer.Option(help="list the runs and whether they are done, run nothing")] = False,
) -> None:
    """Run a benchmark grid (finished runs are read back: a killed benchmark resumes), then write its report."""
    from tqdm import tqdm

    from coreselect.experiments import ResultStore
    from coreselect.experiments.grid import RunOutcome, expand, load_bench_file, load_preset, narrowed, run_grid
    from coreselect.report.page import write_report
    from coreselect.report.tables import answers, summarise_store

    if (preset is None) == (config is None):
        raise InvalidInputError("name a benchmark: --preset NAME or --config FILE (one of them)")
    spec = load_preset(preset) if preset is not None else load_bench_file(config)  # type: ignore[arg-type]
    spec = narrowed(spec, grids=grids, seeds=seeds)
    results = ResultStore(store or Path(spec.store or "runs/bench.db"))
    planned = expand(spec)
    if dry_run:
        rows = []
        for run in planned:
            stored = results.get(run.config.run_id)
            rows.append([run.config.method_label, run.config.model, f"{run.config.train.budget:g}",
                         run.config.label_noise, run.config.imbalance, run.config.seed,
                         stored.status if stored else "to do"])
        typer.echo(tabulate(rows, headers=["method", "model", "budget", "noise", "imbalance", "seed", "status"],
                            tablefmt="github"))
        return
    failures: list[RunOutcome] = []
    with tqdm(total=len(planned), desc=f"benchmark ({results.path.name})", unit="run", dynamic_ncols=True) as bar:

        def progress(outcome: RunOutcome) -> None:
            if outcome.error is not None:
                failures.append(outcome)
            c = outcome.run.config
            state = "already done" if outcome.skipped else "failed" if outcome.error else "done"
            bar.set_postfix_str(f"{c.method_label} b={c.train.budget:g} s={c.seed}: {state}")
            bar.update()

        with _resumable():
            outcomes = run_grid(planned, results, jobs=jobs, device=device, on_outcome=progress)
    skipped = sum(o.skipped for o in outcomes)
    typer.echo(f"{len(outcomes) - skipped} runs made, {skipped} already in {results.path}, {len(failures)} failed")
    for failure in failures:
        typer.echo(f"failed: {failure.run.config.method_label} seed {failure.run.config.seed}: {failure.error}",
                   err=True)
    folder = out or results.path.parent / f"{results.path.stem}_report"
    written = write_report(results, folder, targets=spec.targets)
    mine = {run.config.run_id for run in planned}  # this benchmark's runs, not others sharing the store
    typer.echo(answers(summarise_store(results, [r for r in results.runs(status="done") if r.run_id in mine])))
    typer.echo(f"report: {', '.join(str(p) for p in written)}")
    if failures:
        raise typer.Exit(1)


@app.command()
def methods() -> None:
    """List the selection strategies with their family and parameters, then the models and datasets."""
    from coreselect.data.catalog import DATASETS
    from coreselect.models.zoo import MODELS
    from coreselect.strategies import STRATEGIES
    from coreselect.strategies.registry import capabilities

    rows = []
    for spec in STRATEGIES.values():
        fields = spec.params.model_fields
        params = ", ".join(f"{k}={f.default!r}" for k, f in fields.items()) or "—"
        signals = ("training steps" if spec.reads_training_signals
                   else "with reuse_within" if "reuse_within" in fields else "—")
        rows.append([spec.name, spec.family, signals, ", ".join(capabilities(spec.name)) or "—", params,
                     spec.summary])
    typer.echo(tabulate(rows, headers=["strategy", "family", "signal cache", "declares", "parameters",
                                       "what it does"], tablefmt="github"))
    typer.echo(f"\nmodels: {', '.join(MODELS)}\ndatasets: {', '.join(DATASETS)}")


class _Stopped(Exception):
    """Ctrl-C or SIGTERM during a command (raised past the CLI framework, which would swallow it)."""


@contextmanager
def _resumable() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while a command trains, and an interruption into :class:`_Stopped`."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    except KeyboardInterrupt:
        raise _Stopped() from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> None:
    """Entry point: user errors print one line and exit with status 2; an interrupted command says how to
    resume and exits with 130."""
    print_notes_to_stderr()
    try:
        app()
    except CoreselectError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except (_Stopped, KeyboardInterrupt):
        typer.echo("interrupted; re-run the same command to resume from the last checkpoint", err=True)
        sys.exit(130)
