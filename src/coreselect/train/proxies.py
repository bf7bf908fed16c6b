"""Proxy training runs whose by-products score examples for static coresets.

- ``dynamics``: one full-data run recording forgetting events, areas under the margin, loss trajectories
  (when there is a validation split) and its final logits (forgetting, LTC, SVP);
- ``early``: ``runs`` independent full-data runs, each stopped after ``epochs`` epochs, at the end of which
  EL2N (‖p − y‖₂) and GraNd (last-layer gradient norm, closed form) are averaged over the runs;
- ``holdout``: one run on the holdout split, then its logits for every training example (irreducible
  losses and validation-model predictions, looked up by index).

:func:`run_proxy` caches its :class:`ProxyRecord` in a folder, so that every strategy and coreset size of a
comparison reuses one proxy run; the seconds it took and a checksum of every file are kept with it (a damaged
cache is remade). Proxy runs are not checkpointed: an interrupted one starts again. In a distributed job the
proxy run is data-parallel too: rank 0 holds the folder's lock and decides whether the run is needed, every
rank trains, rank 0 writes the record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
from filelock import FileLock
from torch import nn

from coreselect.data.catalog import DataSplits
from coreselect.data.examples import Examples
from coreselect.distributed import world
from coreselect.errors import InvalidInputError, UnknownNameError
from coreselect.models.zoo import MODELS, create_model
from coreselect.notes import LOG
from coreselect.seeding import derive_seed
from coreselect.signals import forward_in_batches, last_layer_gradient_norms, logit_gradients
from coreselect.strategies.protocol import Strategy
from coreselect.strategies.proxy import NeedsProxy, ProxyRecord, ProxyRequest
from coreselect.strategies.registry import create_strategy
from coreselect.train.checkpoint import CorruptFileError, load_tensors, save_tensors
from coreselect.train.config import TrainConfig
from coreselect.train.forgetting import FORGETTING, ForgettingEvents
from coreselect.train.margins import AUM, AreaUnderMargin
from coreselect.train.precision import resolve_precision
from coreselect.train.trainer import Trainer
from coreselect.train.trajectory import LossTrajectories, TrajectoryStore


def _train(model: nn.Module, train: Examples, config: TrainConfig, *, val: Examples | None,
           seed: int, device: str | torch.device, callbacks: list) -> None:
    probe = val if val is not None else train.subset(torch.arange(min(len(train), 256)))  # evaluated once, unused
    Trainer(model, create_strategy("full"), train, probe, config, val=val, seed=seed,
            device=device, callbacks=callbacks, progress_bar=False).fit()


def proxy_folder(root: str | Path, key: Sequence[object], request: ProxyRequest) -> Path:
    """Where the proxy runs of ``request`` (resolved) are cached under ``root`` for the data ``key`` names (JSON
    values: a benchmark's setting and seed), so that every run of that data shares them."""
    identity = json.dumps([*key, request.identity()], sort_keys=True)
    return Path(root) / hashlib.sha256(identity.encode()).hexdigest()[:16]


def resolved(request: ProxyRequest, model_name: str | None, epochs: int) -> ProxyRequest:
    """``request`` with the run's architecture (``model_name``) and ``epochs`` where it names none."""
    return dataclasses.replace(request, model=request.model or model_name, epochs=request.epochs or epochs)


def provide_proxy(strategy: Strategy, data: DataSplits, make_model: Callable[[], nn.Module], *,
                  folder: str | Path, config: TrainConfig, model_name: str | None = None, seed: int = 0,
                  device: str | torch.device = "cpu", remake: bool = False) -> None:
    """Make (or read from ``folder``) the proxy runs ``strategy`` scores with and hand it their record; nothing
    when it needs none. ``make_model`` builds a fresh model of the run's own architecture (``model_name``, if it
    has one in the zoo); a request naming another architecture gets that one from the zoo. ``config`` is the run's
    training recipe (the proxy trains on full data, for the request's epochs or the recipe's, in the precision of
    the run's selection)."""
    request = strategy.proxy_request() if isinstance(strategy, NeedsProxy) else None
    if request is None:
        return
    name = strategy.name
    if request.needs_validation and data.val is None:
        raise InvalidInputError(f"{name} records validation losses: hold out a validation split "
                                "(--val-fraction 0.1; prepare_splits(..., val_fraction=0.1))")
    if request.kind == "holdout" and data.holdout is None:
        raise InvalidInputError(f"{name} trains a model on a holdout split: pass --holdout 0.5 "
                                "(prepare_splits(..., holdout_fraction=0.5))")
    if request.model is not None and request.model != model_name:
        if request.model not in MODELS:
            raise UnknownNameError("proxy model", request.model, MODELS)
        transfer = request.model
        make_model = lambda: create_model(transfer, data.train.input_shape, data.train.num_classes)  # noqa: E731
    recipe = config.model_copy(update={"budget": 1.0, "selection_precision": None,  # selection's work
                                       "precision": resolve_precision(config.selection_forwards, device)})
    strategy.provide(run_proxy(resolved(request, model_name, recipe.epochs), make_model, data.train, data.val,
                               folder=folder, seed=seed, config=recipe, device=device, holdout=data.holdout,
                               remake=remake))


def run_proxy(request: ProxyRequest, make_model: Callable[[], nn.Module], train: Examples,
              val: Examples | None, *, folder: str | Path, seed: int = 0, config: TrainConfig | None = None,
              device: str | torch.device = "cpu", holdout: Examples | None = None,
              remake: bool = False) -> ProxyRecord:
    """The record of ``request``'s proxy runs, read from ``folder`` if they were made before (and check out).

    ``make_model`` returns a freshly initialised proxy model (seeded here); ``config`` is the training recipe
    (full data, one evaluation point; its epochs unless the request names some). ``remake`` trains them again
    even if the folder holds them; a cache whose files do not match the checksums in its ``record.json`` is
    reported in one line and remade.
    """
    folder, group = Path(folder), world()
    folder.mkdir(parents=True, exist_ok=True)
    # parallel runs of a benchmark wait for the one making the proxy; in a distributed job rank 0 takes the
    # lock and its ranks follow its decision
    with FileLock(folder / ".lock") if group.is_main else nullcontext():
        cached = None if remake or not group.is_main else _load_cached(folder, request, train, val)
        if not group.broadcast(cached is not None):
            if group.is_main:
                _clear(folder)
            _make(request, make_model, train, val, folder=folder, seed=seed, config=config, device=device,
                  holdout=holdout)
        group.barrier()  # the record is on disk
    return cached if cached is not None else _load(folder, request, train, val)


def _clear(folder: Path) -> None:
    """Remove a cache's files (not its lock, which the caller holds)."""
    for entry in folder.iterdir():
        if entry.name == ".lock":
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def _load_cached(folder: Path, request: ProxyRequest, train: Examples,
                 val: Examples | None) -> ProxyRecord | None:
    """The cached record if the folder holds a complete one whose files check out, else None (said if damaged)."""
    if not (folder / "record.json").exists():
        return None  # never made, or interrupted before its record was written
    try:
        return _load(folder, request, train, val)
    except (CorruptFileError, OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError,
            pickle.UnpicklingError) as err:
        LOG.warning("proxy cache %s is damaged (%s); remaking it", folder, err)
        return None


def _make(request: ProxyRequest, make_model: Callable[[], nn.Module], train: Examples,
          val: Examples | None, *, folder: Path, seed: int, config: TrainConfig | None,
          device: str | torch.device, holdout: Examples | None) -> None:
    recipe = config or TrainConfig()
    recipe = recipe.model_copy(update={"epochs": request.epochs or recipe.epochs, "budget": 1.0, "eval_points": 1})
    start = time.perf_counter()
    if request.kind == "dynamics":
        torch.manual_seed(derive_seed(seed, "proxy:dynamics"))
        callbacks: list = [forgetting := ForgettingEvents(), margin := AreaUnderMargin()]
        if val is not None:  # loss trajectories need validation losses
            callbacks.append(LossTrajectories(folder / "trajectories", request.record_every, request.train_losses))
        model = make_model()
        _train(model, train, recipe, val=val, seed=seed, device=device, callbacks=callbacks)
        _save({"forgetting": forgetting.example_scores()[FORGETTING], "aum": margin.example_scores()[AUM],
               "final_logits": forward_in_batches(model, train).logits.cpu()}, folder / "scores.pt")
    elif request.kind == "holdout":
        if holdout is None:
            raise ValueError("a holdout proxy needs the holdout split")
        torch.manual_seed(derive_seed(seed, "proxy:holdout"))
        model = make_model()
        _train(model, holdout, recipe, val=None, seed=seed, device=device, callbacks=[])
        _save({"holdout_logits": forward_in_batches(model, train).logits.cpu()}, folder / "scores.pt")
    else:
        el2n, grand = torch.zeros(len(train)), torch.zeros(len(train))
        for run in range(request.runs):
            torch.manual_seed(derive_seed(seed, f"proxy:early:{run}"))
            model = make_model()
            _train(model, train, recipe, val=None, seed=derive_seed(seed, f"proxy:early:{run}"), device=device,
                   callbacks=[])
            out = forward_in_batches(model, train, with_features=True)
            e = logit_gradients(out.logits, train.targets.to(out.logits.device))
            assert out.features is not None
            el2n += e.norm(dim=1).cpu() / request.runs
            grand += last_layer_gradient_norms(e, out.features.float()).cpu() / request.runs
        _save({"el2n": el2n, "grand": grand}, folder / "scores.pt")
    if world().is_main:  # written last: a cache without its record is incomplete
        files = {str(p.relative_to(folder)): _digest(p) for p in sorted(folder.rglob("*"))
                 if p.is_file() and p.name != ".lock"}
        (folder / "record.json").write_text(json.dumps({"seconds": time.perf_counter() - start, "files": files}))


def _save(scores: dict[str, torch.Tensor], path: Path) -> None:
    if world().is_main:  # every rank holds the same (gathered) scores; one writes them
        save_tensors(path, scores)


def _load(folder: Path, request: ProxyRequest, train: Examples, val: Examples | None) -> ProxyRecord:
    record = json.loads((folder / "record.json").read_text())
    for name, digest in record.get("files", {}).items():
        if _digest(folder / name) != digest:
            raise CorruptFileError(f"{name} does not match its checksum")
    seconds = float(record["seconds"])
    if "files" in record:
        scores = load_tensors(folder / "scores.pt")
    else:  # a cache written before checksums: read as it is (a damaged one fails to unpickle and is remade)
        scores = torch.load(folder / "scores.pt", map_location="cpu", weights_only=True)
    targets = train.targets.cpu()
    if request.kind == "holdout":
        return ProxyRecord(seconds, targets, holdout_logits=scores["holdout_logits"])
    if request.kind == "dynamics":
        # a cache from before AUM was recorded lacks "aum": the KeyError has it remade
        result = ProxyRecord(seconds, targets, forgetting=scores["forgetting"], aum=scores["aum"],
                             final_logits=scores["final_logits"])
        if (folder / "trajectories" / "meta.json").is_file() and val is not None:
            store = TrajectoryStore.open(folder / "trajectories")
            result.train_trajectories = torch.from_numpy(store.train)
            result.val_trajectories, result.val_targets = torch.from_numpy(store.val), val.targets.cpu()
        return result
    return ProxyRecord(seconds, targets, el2n=scores["el2n"], grand=scores["grand"])
