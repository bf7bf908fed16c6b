"""PyTorch Lightning: any LightningModule trains on a strategy's weighted batches and spends the budget exactly.

    selection = LightningSelection(create_strategy("crest"), train, Budget(0.3, 20, len(train), 128))
    trainer = lightning.Trainer(max_epochs=1, callbacks=[selection])
    trainer.fit(module, train_dataloaders=selection.dataloader())

and in the module's ``training_step(self, batch, batch_idx)``::

    logits = self(batch.inputs)
    return batch.loss(logits, F.cross_entropy(logits, batch.targets, reduction="none"))

The module's ``forward`` must map inputs to logits (strategies forward it for selection). The strategy's state
is saved in Lightning's checkpoints and restored with them.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from coreselect.data.examples import Examples
from coreselect.integrations.feed import SelectedBatch, SelectionFeed
from coreselect.strategies.protocol import Budget, Strategy


class LightningSelection(pl.Callback):
    """The callback that fills each step's batch from the strategy and stops the fit when the budget is spent."""

    def __init__(self, strategy: Strategy, train: Examples, budget: Budget, *, seed: int = 0) -> None:
        self.feed = SelectionFeed(strategy, train, budget, seed=seed)

    def dataloader(self) -> DataLoader:
        """The DataLoader to fit on (``trainer.fit(module, train_dataloaders=selection.dataloader())``)."""
        return self.feed.dataloader()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.feed.start(pl_module, pl_module.device)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        assert isinstance(batch, SelectedBatch), "fit on selection.dataloader()"
        self.feed.fill(batch, trainer.optimizers[0] if trainer.optimizers else None)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.feed.observe(batch)
        if self.feed.done:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return self.feed.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.feed.load_state_dict(state_dict)
