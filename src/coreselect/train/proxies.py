"""Proxy training runs whose by-products score examples for static coresets.

- ``dynamics``: one full-data run recording forgetting events and loss trajectories (forgetting, LTC);
- ``early``: ``runs`` independent full-data runs, each stopped after ``epochs`` epochs, at the end of which
  EL2N (‖p − y‖₂) and GraNd (last-layer gradient norm, closed form) are averaged over the runs.

:func:`run_proxy` caches its :class:`ProxyRecord` in a folder, so that every strategy and coreset size of a
comparison reuses one proxy run; the seconds it took are kept with it. Proxy runs are not checkpointed: an
interrupted one starts again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from coreselect.data.dataset import InMemoryDataset
from coreselect.seeding import derive_seed
from coreselect.signals import forward_in_batches, last_layer_gradient_norms, logit_gradients
from coreselect.strategies.registry import create_strategy
from coreselect.strategies.static import ProxyRecord, ProxyRequest
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
              device: str | torch.device = "cpu") -> ProxyRecord:
    """The record of ``request``'s proxy runs, read from ``folder`` if they were made before.

    ``make_model`` returns a freshly initialised proxy model (seeded here); ``config`` is the training recipe
    (full data, one evaluation point; its epochs unless the request names some).
    """
    folder = Path(folder)
    done = folder / "record.json"
    if done.is_file():
        return _load(folder, request, json.loads(done.read_text())["seconds"], train, val)
    folder.mkdir(parents=True, exist_ok=True)
    recipe = config or TrainConfig()
    recipe = recipe.model_copy(update={"epochs": request.epochs or recipe.epochs, "budget": 1.0, "eval_points": 1})
    start = time.perf_counter()
    if request.kind == "dynamics":
        torch.manual_seed(derive_seed(seed, "proxy:dynamics"))
        forgetting = ForgettingEvents()
        trajectories = LossTrajectories(folder / "trajectories", request.record_every, request.train_losses)
        _train(make_model(), train, recipe, val=val, seed=seed, device=device, callbacks=[forgetting, trajectories])
        torch.save({"forgetting": forgetting.example_scores()[FORGETTING]}, folder / "scores.pt")
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
        torch.save({"el2n": el2n, "grand": grand}, folder / "scores.pt")
    seconds = time.perf_counter() - start
    done.write_text(json.dumps({"seconds": seconds}))
    return _load(folder, request, seconds, train, val)


def _load(folder: Path, request: ProxyRequest, seconds: float, train: InMemoryDataset,
          val: InMemoryDataset | None) -> ProxyRecord:
    scores = torch.load(folder / "scores.pt")
    targets = train.targets.cpu()
    if request.kind == "dynamics":
        store = TrajectoryStore.open(folder / "trajectories")
        return ProxyRecord(seconds, targets, forgetting=scores["forgetting"],
                           train_trajectories=torch.from_numpy(store.train),
                           val_trajectories=torch.from_numpy(store.val),
                           val_targets=None if val is None else val.targets.cpu())
    return ProxyRecord(seconds, targets, el2n=scores["el2n"], grand=scores["grand"])
