"""The Hugging Face ``Trainer``: a subclass that trains any classifier on a strategy's weighted batches and spends
the budget exactly.

    trainer = SelectionTrainer(model=model, args=TrainingArguments(output_dir="out", learning_rate=1e-3),
                               strategy=create_strategy("rho-loss"), train=train, budget=budget,
                               input_name="pixel_values")
    trainer.train()

``input_name`` is the keyword the model takes its inputs by (``pixel_values``, ``input_ids``, ...); the model's
output has ``logits`` (or is the logits). ``max_steps`` is set from the budget (an upper bound: training stops
as soon as the budget is spent) and no train dataset is needed; gradient accumulation must be 1.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from coreselect.data.examples import Examples
from coreselect.errors import InvalidInputError
from coreselect.integrations.feed import SelectedBatch, SelectionFeed
from coreselect.strategies.protocol import Budget, Strategy


class LogitsOf(nn.Module):
    """A model called by keyword and returning an output with ``logits``, as a module from inputs to logits
    (what strategies forward for selection). Shares the model's parameters."""

    def __init__(self, model: nn.Module, input_name: str) -> None:
        super().__init__()
        self.model, self.input_name = model, input_name

    def forward(self, inputs: Tensor) -> Tensor:
        out = self.model(**{self.input_name: inputs})
        return out if isinstance(out, Tensor) else out.logits


class _Observe(TrainerCallback):
    def __init__(self, trainer: SelectionTrainer) -> None:
        self.trainer = trainer

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        feed = self.trainer.feed
        feed.observe(self.trainer.last_batch)
        if feed.done:
            control.should_training_stop = True


class SelectionTrainer(Trainer):
    """A ``Trainer`` whose steps train on ``strategy``'s batches of ``train`` until ``budget`` is spent."""

    def __init__(self, *args: Any, strategy: Strategy, train: Examples, budget: Budget,
                 input_name: str = "pixel_values", **kwargs: Any) -> None:
        feed = SelectionFeed(strategy, train, budget, seed=kwargs["args"].seed if "args" in kwargs else 42)
        if "args" in kwargs:
            if kwargs["args"].gradient_accumulation_steps != 1:
                raise InvalidInputError("gradient accumulation must be 1 with a selection strategy: each step's "
                                        "batch is chosen after the previous optimizer step")
            kwargs["args"].max_steps = feed.max_steps
        super().__init__(*args, **kwargs)
        self.feed, self.input_name = feed, input_name
        self.last_batch = SelectedBatch()
        self.add_callback(_Observe(self))

    def get_train_dataloader(self) -> DataLoader:
        return self.feed.dataloader()

    def training_step(self, model: nn.Module, inputs: Any, num_items_in_batch: Any = None) -> Tensor:
        if isinstance(inputs, SelectedBatch):  # the step begins: the strategy chooses its batch now
            self.feed.start(LogitsOf(model, self.input_name), next(model.parameters()).device)
            self.feed.fill(inputs, self.optimizer)
            self.last_batch = inputs
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model: nn.Module, inputs: Any, return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Tensor | tuple[Tensor, Any]:
        if not isinstance(inputs, SelectedBatch):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)  # evaluation batches
        logits = LogitsOf(model, self.input_name)(inputs.inputs)
        loss = inputs.loss(logits, F.cross_entropy(logits.float(), inputs.targets, reduction="none"))
        return (loss, {"logits": logits}) if return_outputs else loss


__all__ = ["LogitsOf", "SelectionTrainer"]
