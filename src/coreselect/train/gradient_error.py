"""Gradient-error diagnostic: how far the weighted selection's gradient is from the full-data gradient.

At each evaluation point it records ‖∇L_V(w) − ∇L_S(w)‖ (and its ratio to ‖∇L_V(w)‖), where L_V is the
mean loss over the training set (or a fixed random sample of it) and L_S the weighted mean loss over the
strategy's latest selection — the error plotted in the stable-coresets paper (its Fig. 6).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from coreselect.data.examples import Examples
from coreselect.signals import per_example_losses, weighted
from coreselect.train.callbacks import Callback

if TYPE_CHECKING:
    from coreselect.train.trainer import EvalRecord, Trainer

ABSOLUTE, RELATIVE = "gradient_error", "gradient_error_relative"


def mean_gradient(model: nn.Module, data: Examples, indices: Tensor, weights: Tensor | None = None,
                  batch_size: int = 512) -> Tensor:
    """(1/|S|) Σ_{i∈S} w_i ∇ℓ_i over all trainable parameters, flattened; the model in eval mode."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            x, y = data[chunk]
            losses = weighted(per_example_losses(model(x), y),
                              None if weights is None else weights[start : start + batch_size])
            for acc, g in zip(total, torch.autograd.grad(losses.sum() / len(indices), params), strict=True):
                acc += g
    finally:
        model.train(was_training)
    return torch.cat([g.flatten() for g in total])


class GradientError(Callback):
    """Adds ``gradient_error`` and ``gradient_error_relative`` to each evaluation record.

    ``sample`` limits the full-data gradient to a fixed random sample of that many training examples
    (None: the whole training set). Strategies that have recorded no selection train on all the data, and
    their error is 0.
    """

    def __init__(self, sample: int | None = None, seed: int = 0) -> None:
        self.sample, self.seed = sample, seed
        self._reference: Tensor | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        n = len(trainer.train_data)
        if self.sample is None or self.sample >= n:
            self._reference = torch.arange(n)
        else:
            generator = torch.Generator().manual_seed(self.seed)
            self._reference = torch.randperm(n, generator=generator)[: self.sample]

    def on_evaluation(self, trainer: Trainer, record: EvalRecord) -> None:
        rounds = trainer.context.log.rounds
        if not rounds or self._reference is None:
            record.extras.update({ABSOLUTE: 0.0, RELATIVE: 0.0})
            return
        latest = rounds[-1]
        full = mean_gradient(trainer.model, trainer.train_data, self._reference)
        selected = mean_gradient(trainer.model, trainer.train_data, latest.indices, latest.weights)
        error = float((full - selected).norm())
        record.extras.update({ABSOLUTE: error, RELATIVE: error / max(float(full.norm()), 1e-12)})
