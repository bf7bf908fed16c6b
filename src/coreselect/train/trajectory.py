"""Per-example loss trajectories of the training pool and a validation set, recorded while training.

:class:`TrajectoryStore` keeps them in two memory-mapped ``.npy`` files (rows = recording points), so a
large pool needs no RAM, plus a ``meta.json`` with the number of rows written; reopening the folder
continues where it stopped. :class:`LossTrajectories` is the trainer callback that fills it every ``every``
(compressed) epochs: validation losses by an eval-mode forward, training losses either by the same
eval-mode forward over the pool (``train_losses="eval"``, the LTC/CLD official protocol) or for free from
the training steps themselves (``"steps"``: each example's loss at its last presentation in the interval,
computed by the training forward anyway; NaN if it was not presented).

In a distributed job the store is sharded by columns: each rank computes (or, with ``"steps"``, already
holds) the training losses of its contiguous part of the pool and writes them into the shared file; rank 0
writes the validation row and ``meta.json`` once every rank has written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from coreselect.distributed import local_only
from coreselect.signals import forward_in_batches, per_example_losses
from coreselect.strategies.proxy import TrainLossSource
from coreselect.train.callbacks import Callback

if TYPE_CHECKING:
    from coreselect.data.examples import Examples
    from coreselect.strategies.protocol import Batch, StepOutput
    from coreselect.train.trainer import Trainer

class TrajectoryStore:
    """Rows of per-example losses, ``train`` [rows, n_train] and ``val`` [rows, n_val], on disk.

    ``writer=False`` opens an existing store to fill columns of its rows (another rank writes ``meta.json``).
    """

    def __init__(self, folder: str | Path, n_train: int, n_val: int, capacity: int, *, writer: bool = True) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.writer = writer
        meta = self.folder / "meta.json"
        if meta.is_file():
            info = json.loads(meta.read_text())
            if (info["n_train"], info["n_val"]) != (n_train, n_val) or info["capacity"] < capacity:
                raise ValueError(f"{self.folder} holds trajectories of another shape: {info}")
            self.rows, mode = info["rows"], "r+"
        else:
            self.rows, mode = 0, "w+"
        self.capacity, self.n_train, self.n_val = capacity, n_train, n_val
        self._train = np.lib.format.open_memmap(self.folder / "train.npy", mode, np.float32, (capacity, n_train))
        self._val = np.lib.format.open_memmap(self.folder / "val.npy", mode, np.float32, (capacity, n_val))
        self._write_meta()

    @classmethod
    def open(cls, folder: str | Path) -> TrajectoryStore:
        """An existing store, read back (nothing is written: several processes may read it at once)."""
        info = json.loads((Path(folder) / "meta.json").read_text())
        return cls(folder, info["n_train"], info["n_val"], info["capacity"], writer=False)

    def _write_meta(self) -> None:
        if not self.writer:
            return
        tmp = self.folder / "meta.json.tmp"
        tmp.write_text(json.dumps({"rows": self.rows, "n_train": self.n_train, "n_val": self.n_val,
                                   "capacity": self.capacity}))
        tmp.replace(self.folder / "meta.json")

    def append(self, train: np.ndarray, val: np.ndarray) -> None:
        self.write(train, val)
        self.commit()

    def write(self, train: np.ndarray, val: np.ndarray | None, start: int = 0) -> None:
        """Fill columns [start, start + len(train)) of the next row (and its validation row, if given)."""
        if self.rows >= self.capacity:
            raise ValueError(f"trajectory store {self.folder} is full ({self.capacity} rows)")
        self._train[self.rows, start : start + len(train)] = train
        self._train.flush()
        if val is not None:
            self._val[self.rows] = val
            self._val.flush()

    def commit(self) -> None:
        """The next row is complete: count it."""
        self.rows += 1
        self._write_meta()

    def truncate(self, rows: int) -> None:
        """Forget rows after the first ``rows`` (a run resumed from an earlier checkpoint rewrites them)."""
        self.rows = min(self.rows, rows)
        self._write_meta()

    @property
    def train(self) -> np.ndarray:
        return self._train[: self.rows]

    @property
    def val(self) -> np.ndarray:
        return self._val[: self.rows]


def _losses(model: torch.nn.Module, data: Examples, start: int = 0, stop: int | None = None) -> np.ndarray:
    stop = len(data) if stop is None else stop
    logits = forward_in_batches(model, data, indices=torch.arange(start, stop)).logits
    return per_example_losses(logits, data.targets[start:stop].to(logits.device)).float().cpu().numpy()


class LossTrajectories(Callback):
    """Records loss trajectories into ``folder`` every ``every`` compressed epochs (see the module docstring).

    Needs a validation set (the trainer's ``val``); the store is resumed with the run.
    """

    def __init__(self, folder: str | Path, every: int = 1, train_losses: TrainLossSource = "eval") -> None:
        if every < 1:
            raise ValueError(f"every must be a positive number of epochs, got {every}")
        self.folder, self.every, self.source = Path(folder), every, train_losses
        self.store: TrajectoryStore | None = None
        self._restored_rows: int | None = None
        self._restored_step_losses: torch.Tensor | None = None
        self._step_losses: torch.Tensor | None = None
        self._next_at = 0

    def on_train_begin(self, trainer: Trainer) -> None:
        val = trainer.context.val
        if val is None:
            raise ValueError("loss trajectories need a validation set: pass val= to the Trainer (--val-fraction)")
        capacity = -(-trainer.budget.total_examples // self._interval(trainer))
        group = trainer.world
        if group.is_main:  # creates the files; the other ranks open them once they exist
            self.store = TrajectoryStore(self.folder, len(trainer.train_data), len(val), capacity)
            self.store.truncate(self._restored_rows or 0)
        group.barrier()
        if not group.is_main:
            self.store = TrajectoryStore(self.folder, len(trainer.train_data), len(val), capacity, writer=False)
        self._next_at = (self.store.rows + 1) * self._interval(trainer)
        if self.source == "steps":
            self._step_losses = self._restored_step_losses
            if self._step_losses is None:
                self._step_losses = torch.full((len(trainer.train_data),), float("nan"))

    def on_step_end(self, trainer: Trainer, batch: Batch, out: StepOutput) -> None:
        if self._step_losses is not None:
            self._step_losses[batch.indices.cpu()] = out.losses.float().cpu()
        if trainer.state.examples >= self._next_at:
            self.record(trainer)

    def record(self, trainer: Trainer) -> None:
        """One row of trajectories at the current weights (called at every interval; also callable directly)."""
        assert self.store is not None and trainer.context.val is not None
        group = trainer.world
        val = _losses(trainer.model, trainer.context.val)
        start, stop = group.bounds(len(trainer.train_data))  # this rank's columns (all of them on one process)
        if self._step_losses is not None:
            train = self._step_losses[start:stop].numpy().copy()
            self._step_losses.fill_(float("nan"))
        else:
            with local_only():  # each rank forwards its own part of the pool; nothing is gathered
                train = _losses(trainer.model, trainer.train_data, start, stop)
        self.store.write(train, val if group.is_main else None, start)
        group.barrier()  # every rank's columns are on disk before the row counts
        self.store.commit()
        self._next_at = (self.store.rows + 1) * self._interval(trainer)

    def _interval(self, trainer: Trainer) -> int:
        """Examples between recordings: ``every`` compressed epochs."""
        return trainer.budget.epoch_examples * self.every

    def state_dict(self) -> dict[str, Any]:
        losses = None if self._step_losses is None else self._step_losses.clone()
        return {"rows": 0 if self.store is None else self.store.rows, "step_losses": losses}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restored_rows = state.get("rows", 0)
        self._restored_step_losses = state.get("step_losses")
