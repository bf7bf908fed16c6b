"""Test accuracy and loss of a model on an in-memory dataset."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from coreselect.data.examples import Examples
from coreselect.signals import forward_in_batches, per_example_losses


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    loss: float


def evaluate(model: nn.Module, dataset: Examples, batch_size: int = 256) -> Evaluation:
    """Accuracy and mean cross-entropy of ``model`` (in eval mode) on ``dataset``."""
    logits = forward_in_batches(model, dataset, batch_size=batch_size).logits
    targets = dataset.targets.to(logits.device)
    accuracy = (logits.argmax(1) == targets).float().mean()
    loss = per_example_losses(logits, targets).mean()
    return Evaluation(float(accuracy), float(loss)) if len(dataset) else Evaluation(float("nan"), float("nan"))


__all__ = ["Evaluation", "evaluate"]
