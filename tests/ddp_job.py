"""A job the distributed tests launch (``python tests/ddp_job.py`` or under ``torchrun``): every registered
strategy run through :func:`coreselect.experiments.run_experiment` on a small real dataset, with every batch
the trainer consumed recorded. Rank 0 saves ``{strategy: {"batches", "selections", "accuracy"}}``.

``--frozen`` turns the optimizer step into a no-op: the whole data-parallel step still runs (each rank's part
of the batch, DDP's gradient all-reduce, the gathered outputs the strategy observes), but the weights stay at
their initialisation, so every selection of the run is a deterministic function of the same inputs in a
one-process and a two-process job.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from coreselect import distributed
from coreselect.experiments import ResultStore, RunConfig, run_experiment
from coreselect.strategies import STRATEGIES
from coreselect.train.callbacks import Callback


class RecordBatches(Callback):
    """Every batch the trainer back-propagated: indices and weights."""

    def __init__(self) -> None:
        self.batches: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def on_step_end(self, trainer: Any, batch: Any, out: Any) -> None:
        weights = None if batch.weights is None else batch.weights.detach().cpu().clone()
        self.batches.append((batch.indices.cpu().clone(), weights))


class CrashAtStep(Callback):
    """Every rank raises after ``step`` steps, as a killed job would stop (the checkpoint stays behind)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer: Any, batch: Any, out: Any) -> None:
        if trainer.state.step >= self.step:
            raise RuntimeError(f"crash at step {trainer.state.step}")


class FreezeWeights(Callback):
    """The optimizer's step does nothing: the model keeps its initial weights for the whole run."""

    def on_train_begin(self, trainer: Any) -> None:
        trainer.optimizer.step = lambda *args, **kwargs: None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frozen", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (nccl, one GPU per process)")
    parser.add_argument("--strategies", nargs="+", default=sorted(STRATEGIES))
    parser.add_argument("--eval-points", type=int, default=1)
    parser.add_argument("--crash-at-step", type=int, default=None)
    args = parser.parse_args()
    group, device = distributed.init_from_environment(args.device)
    store = ResultStore(args.store)
    results: dict[str, dict[str, Any]] = {}
    for name in args.strategies:
        config = RunConfig.create(
            dataset="npz", data_root=args.data_root, model="mlp", strategy=name, seed=args.seed,
            val_fraction=0.1, holdout_fraction=0.3,
            train={"epochs": 3, "budget": 0.3, "batch_size": 32, "optimizer": "adamw", "lr": 1e-3,
                   "schedule": "constant", "eval_points": args.eval_points},
        )
        recorder = RecordBatches()
        callbacks: list[Callback] = [recorder, FreezeWeights()] if args.frozen else [recorder]
        if args.crash_at_step is not None:
            callbacks.append(CrashAtStep(args.crash_at_step))
        run = run_experiment(config, store, device=str(device), progress_bar=False, callbacks=callbacks)
        if group.is_main:
            results[name] = {"batches": recorder.batches, "selections": store.selections(run.run_id),
                             "accuracy": run.test_accuracy}
    if group.is_main:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        torch.save(results, args.out)
    distributed.shutdown()


if __name__ == "__main__":
    main()
