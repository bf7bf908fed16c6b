"""Run one configuration end to end: data, model, strategy, trainer, store. Resumes interrupted runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from coreselect.data.catalog import DataSplits, load_dataset, prepare_splits
from coreselect.distributed import rank_device, world
from coreselect.errors import CoreselectError
from coreselect.experiments.alignment import ALIGNMENT, alignment_record
from coreselect.experiments.config import RunConfig
from coreselect.experiments.store import ResultStore, StoredRun
from coreselect.models.zoo import check_model_fits, create_model
from coreselect.seeding import derive_seed
from coreselect.strategies.proxy import ProxyRequest
from coreselect.strategies.registry import STRATEGIES, create_strategy, strategy_spec, validate_params
from coreselect.train.callbacks import Callback
from coreselect.train.checkpoint import remove_checkpoint
from coreselect.train.collapse import COLLAPSE
from coreselect.train.forgetting import ForgettingEvents
from coreselect.train.gradient_error import GradientError
from coreselect.train.noisy_share import NoisyShare
from coreselect.train.precision import PRECISION, resolve_precision
from coreselect.train.proxies import provide_proxy, proxy_folder, resolved
from coreselect.train.trainer import Trainer, TrainResult
from coreselect.train.trajectory import TrajectoryStore


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU; under ``torchrun`` each rank takes its own GPU."""
    return rank_device(device)


def checkpoint_path(store: ResultStore, config: RunConfig) -> Path:
    return store.path.parent / f"{store.path.name}.checkpoints" / f"{config.run_id}.pt"


def load_splits(config: RunConfig) -> DataSplits:
    """The data of ``config``'s setting: its splits, label noise and imbalance, as the run sees them."""
    splits = prepare_splits(
        load_dataset(config.dataset, config.data_root, config.num_classes),
        val_fraction=config.val_fraction,
        label_noise=config.label_noise,
        noise_kind=config.noise_kind,
        imbalance_ratio=config.imbalance,
        holdout_fraction=config.holdout_fraction,
        seed=config.seed,
    )
    return splits.in_memory() if config.workers is None else splits.streamed(config.workers)


def proxy_request(config: RunConfig) -> ProxyRequest | None:
    """The proxy runs ``config``'s strategy scores with (from its registered spec), architecture and epochs
    resolved; None if none."""
    spec = strategy_spec(config.strategy)
    request = spec.proxy_request(validate_params(config.strategy, config.params))
    return None if request is None else resolved(request, config.model, config.train.epochs)


def proxy_cache(store: ResultStore, config: RunConfig, request: ProxyRequest) -> Path:
    """Where ``config``'s proxy runs are cached: beside the store, shared by the runs of its setting and seed."""
    return proxy_folder(store.path.parent / f"{store.path.name}.proxies", [config.setting_key, config.seed],
                        request)


def run_records(store: ResultStore, config: RunConfig, splits: DataSplits, result: TrainResult,
                request: ProxyRequest | None, device: torch.device) -> dict[str, dict[str, Any]]:
    """What the report draws of a run besides its numbers, so that it reads the store alone: the class counts of
    the training set and of everything selected (``class_counts``), the precisions training and selection
    forwards ran in (``precision``: ``auto`` made concrete for the device) and, for a strategy that scores by
    validation-loss trajectories, the examples its proxy's trajectories align most and least (``alignment``);
    for a run whose test accuracy fell back to chance after it had learned, where (``collapse``)."""
    targets, classes = splits.train.targets.cpu(), splits.train.num_classes
    chosen = torch.cat([s.indices.cpu() for s in result.selections]) if result.selections else None
    records: dict[str, dict[str, Any]] = {"class_counts": {
        "training": torch.bincount(targets, minlength=classes).tolist(),
        "selected": None if chosen is None else torch.bincount(targets[chosen], minlength=classes).tolist()},
        PRECISION: {"training": resolve_precision(config.train.precision, device),
                    "selection": resolve_precision(config.train.selection_forwards, device)}}
    folder = None if request is None or not request.needs_validation else \
        proxy_cache(store, config, request) / "trajectories"
    if folder is not None and (folder / "meta.json").is_file() and splits.val is not None:
        trajectories = TrajectoryStore.open(folder)
        records[ALIGNMENT] = alignment_record(
            torch.from_numpy(trajectories.train), torch.from_numpy(trajectories.val), splits.train, splits.val,
            differences=bool(config.params.get("differences", True)), seed=config.seed)
    if result.collapse is not None:
        records[COLLAPSE] = asdict(result.collapse)
    return records


def run_experiment(
    config: RunConfig,
    store: ResultStore,
    *,
    device: str = "auto",
    progress_bar: bool = True,
    callbacks: Sequence[Callback] = (),
    rerun: bool = False,
    gradient_error_sample: int | None = None,
) -> StoredRun:
    """Train ``config`` and store it; a finished run is returned from the store unless ``rerun``.

    ``gradient_error_sample`` (a number of training examples, 0 for all) records the gradient error of the
    selection at each evaluation point (:class:`~coreselect.train.GradientError`). Full-data runs also
    record each training example's forgetting score, which the report uses to rate other runs' selections.

    Under ``torchrun`` every rank calls it with the same arguments: the run trains data-parallel and rank 0
    alone writes the store and the checkpoints.
    """
    group = world()
    existing = store.get(config.run_id)
    if existing is not None and existing.status == "done" and not rerun:
        return existing
    if config.threads is not None:  # results depend on the thread count: a run that fixes it computes with it
        torch.set_num_threads(config.threads)
    splits = load_splits(config)
    torch.manual_seed(derive_seed(config.seed, "model-init"))
    model = create_model(config.model, splits.train.input_shape, splits.train.num_classes)
    sample, _ = splits.train[torch.arange(min(2, len(splits.train)))]
    check_model_fits(model, sample, splits.train.num_classes, name=config.model)
    strategy = create_strategy(config.strategy, **config.params)
    request = proxy_request(config)
    if request is not None:
        provide_proxy(strategy, splits, lambda: create_model(config.model, splits.train.input_shape,
                                                             splits.train.num_classes),
                      folder=proxy_cache(store, config, request), config=config.train, model_name=config.model,
                      seed=config.seed, device=resolve_device(device), remake=rerun)
    path = checkpoint_path(store, config)
    all_callbacks = list(callbacks)
    if gradient_error_sample is not None:
        all_callbacks.append(GradientError(gradient_error_sample or None, seed=config.seed))
    if config.label_noise > 0:
        all_callbacks.append(NoisyShare())
    if STRATEGIES[config.strategy].full_data:  # the reference run records example difficulty for the others
        all_callbacks.append(ForgettingEvents())
    if rerun and group.is_main:
        remove_checkpoint(path)
    group.barrier()  # no rank reads a checkpoint that is being removed
    trainer = Trainer(
        model,
        strategy,
        splits.train,
        splits.test,
        config.train,
        val=splits.val,
        seed=config.seed,
        device=resolve_device(device),
        checkpoint_path=path,
        callbacks=all_callbacks,
        progress_bar=progress_bar,
        description=f"{config.method_label} b={config.train.budget:g} s={config.seed}",
    )
    if group.is_main:
        store.begin(config)
    try:
        result = trainer.fit()
    except CoreselectError as err:
        if group.is_main:
            store.fail(config, str(err))
        raise
    if group.is_main:
        scores = {k: v for cb in all_callbacks if isinstance(cb, ForgettingEvents)
                  for k, v in cb.example_scores().items()}
        store.finish(config, result, noise_mask=splits.train.noise_mask.cpu(), example_scores=scores,
                     records=run_records(store, config, splits, result, request, resolve_device(device)))
        remove_checkpoint(path)
    group.barrier()  # the run is in the store for every rank
    stored = store.get(config.run_id)
    assert stored is not None
    return stored
