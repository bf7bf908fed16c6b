"""Proxy training runs whose by-products score examples for static coresets.

- ``dynamics``: one full-data run recording forgetting events, loss trajectories (when there is a
  validation split) and its final logits (forgetting, LTC, SVP);
- ``early``: ``runs`` independent full-data runs, each stopped after ``epochs`` epochs, at the end of which
  EL2N (‖p − y‖₂) and GraNd (last-layer gradient norm, closed form) are averaged over the runs;
- ``holdout``: one run on the holdout split, then its logits for every training example (irreducible
  losses and validation-model predictions, looked up by index).

:func:`run_proxy` caches its :class:`ProxyRecord` in a folder, so that every strategy and coreset size of a
comparison reuses one proxy run; the seconds it took are kept with it. Proxy runs are not checkpointed: an
interrupted one starts again. In a distributed job the proxy run is data-parallel too: rank 0 holds the
folder's lock and decides whether the run is needed, every rank trains, rank 0 writes the record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from filelock import FileLock
from torch import nn

from coreselect.data.dataset import InMemoryDataset
from coreselect.distributed import world
from coreselect.seeding import derive_seed
from coreselect.signals import forward_in_batches, last_layer_gradient_norms, logit_gradients
from coreselect.strategies.proxy import ProxyRecord, ProxyRequest
from coreselect.strategies.registry import create_strategy
from coreselect.train.config import TrainConfig
from coreselect.train.forgetting import FORGETTING, ForgettingEvents
from coreselect.train.trainer import Trainer
from coreselect.train.trajectory import LossTrajectories, TrajectoryStore


def _train(model: nn.Module, train: InMemoryDataset, config: TrainConfig, *, val: InMemoryDataset | None,
           seed: int, device: str | torch.device, callbacks: list) -> None:
    probe = val if val is not None else train.subset(torch.arange(min(len(train), 256)))  # evaluated once, unused
    Trainer(model, create_strategy("full"), train, probe, config, val=val, seed=seed,
            device=device, callbacks=callbacks, progress_bar=False).fit()


def run_proxy(request: ProxyRequest, make_model: Callable[[], nn.Module], train: InMemoryDataset,
              val: InMemoryDataset | None, *, folder: str | Path, seed: int = 0, config: TrainConfig | None = None,
              device: str | torch.device = "cpu", holdout: InMemoryDataset | None = None) -> ProxyRecord:
    """The record of ``request``'s proxy runs, read from ``folder`` if they were made before.

    ``make_model`` returns a freshly initialised proxy model (seeded here); ``config`` is the training recipe
    (full data, one evaluation point; its epochs unless the request names some).
    """
    folder, group = Path(folder), world()
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "record.json"
    # parallel runs of a benchmark wait for the one making the proxy; in a distributed job rank 0 takes the
    # lock and its ranks follow its decision
    with FileLock(folder / ".lock") if group.is_main else nullcontext():
        made_before = group.broadcast(done.is_file())
        if not made_before:
            _make(request, make_model, train, val, folder=folder, seed=seed, config=config, device=device,
                  holdout=holdout)
        group.barrier()  # the record is on disk
    return _load(folder, request, json.loads(done.read_text())["seconds"], train, val)


def _make(request: ProxyRequest, make_model: Callable[[], nn.Module], train: InMemoryDataset,
          val: InMemoryDataset | None, *, folder: Path, seed: int, config: TrainConfig | None,
          device: str | torch.device, holdout: InMemoryDataset | None) -> None:
    recipe = config or TrainConfig()
    recipe = recipe.model_copy(update={"epochs": request.epochs or recipe.epochs, "budget": 1.0, "eval_points": 1})
    start = time.perf_counter()
    if request.kind == "dynamics":
        torch.manual_seed(derive_seed(seed, "proxy:dynamics"))
        callbacks: list = [forgetting := ForgettingEvents()]
        if val is not None:  # loss trajectories need validation losses
            callbacks.append(LossTrajectories(folder / "trajectories", request.record_every, request.train_losses))
        model = make_model()
        _train(model, train, recipe, val=val, seed=seed, device=device, callbacks=callbacks)
        _save({"forgetting": forgetting.example_scores()[FORGETTING],
               "final_logits": forward_in_batches(model, train.inputs).logits.cpu()}, folder / "scores.pt")
    elif request.kind == "holdout":
        if holdout is None:
            raise ValueError("a holdout proxy needs the holdout split")
        torch.manual_seed(derive_seed(seed, "proxy:holdout"))
        model = make_model()
        _train(model, holdout, recipe, val=None, seed=seed, device=device, callbacks=[])
        _save({"holdout_logits": forward_in_batches(model, train.inputs).logits.cpu()}, folder / "scores.pt")
    else:
        el2n, grand = torch.zeros(len(train)), torch.zeros(len(train))
        for run in range(request.runs):
            torch.manual_seed(derive_seed(seed, f"proxy:early:{run}"))
            model = make_model()
            _train(model, train, recipe, val=None, seed=derive_seed(seed, f"proxy:early:{run}"), device=device,
                   callbacks=[])
            out = forward_in_batches(model, train.inputs, with_features=True)
            e = logit_gradients(out.logits, train.targets.to(out.logits.device))
            assert out.features is not None
            el2n += e.norm(dim=1).cpu() / request.runs
            grand += last_layer_gradient_norms(e, out.features.float()).cpu() / request.runs
        _save({"el2n": el2n, "grand": grand}, folder / "scores.pt")
    if world().is_main:
        (folder / "record.json").write_text(json.dumps({"seconds": time.perf_counter() - start}))


def _save(scores: dict[str, torch.Tensor], path: Path) -> None:
    if world().is_main:  # every rank holds the same (gathered) scores; one writes them
        torch.save(scores, path)


def _load(folder: Path, request: ProxyRequest, seconds: float, train: InMemoryDataset,
          val: InMemoryDataset | None) -> ProxyRecord:
    scores = torch.load(folder / "scores.pt")
    targets = train.targets.cpu()
    if request.kind == "holdout":
        return ProxyRecord(seconds, targets, holdout_logits=scores["holdout_logits"])
    if request.kind == "dynamics":
        record = ProxyRecord(seconds, targets, forgetting=scores["forgetting"], final_logits=scores["final_logits"])
        if (folder / "trajectories" / "meta.json").is_file() and val is not None:
            store = TrajectoryStore.open(folder / "trajectories")
            record.train_trajectories = torch.from_numpy(store.train)
            record.val_trajectories, record.val_targets = torch.from_numpy(store.val), val.targets.cpu()
        return record
    return ProxyRecord(seconds, targets, el2n=scores["el2n"], grand=scores["grand"])
