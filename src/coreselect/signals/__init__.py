"""Per-example signals in batched closed form: logits, losses, logit and last-layer gradients, distances,
loss-trajectory correlation, and the cache of what training steps computed anyway."""

from coreselect.signals.forward import ForwardOutputs, forward_in_batches
from coreselect.signals.gradients import (
    last_layer_gradient_norms,
    last_layer_gradients,
    last_layer_pairwise_sq_distances,
    logit_gradients,
    pairwise_sq_distances,
    per_example_losses,
    weighted,
)
from coreselect.signals.hessian import gradient_and_hessian_diagonal, rademacher_like
from coreselect.signals.training import TrainingSignals
from coreselect.signals.trajectory import pairwise_trajectory_correlation, trajectory_correlation, zscore

__all__ = [
    "ForwardOutputs",
    "TrainingSignals",
    "forward_in_batches",
    "gradient_and_hessian_diagonal",
    "last_layer_gradient_norms",
    "last_layer_gradients",
    "last_layer_pairwise_sq_distances",
    "logit_gradients",
    "pairwise_sq_distances",
    "pairwise_trajectory_correlation",
    "per_example_losses",
    "rademacher_like",
    "trajectory_correlation",
    "weighted",
    "zscore",
]
