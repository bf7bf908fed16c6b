"""Gradient proxies of training examples, the ground sets that gradient-matching strategies select from."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from coreselect.signals import logit_gradients
from coreselect.strategies.protocol import Context
from coreselect.submodular.embeddings import Embedding, EuclideanPoints, LastLayerGradients

EmbeddingName = Literal["logit", "last_layer"]


def gradient_proxies(ctx: Context, indices: Tensor | None = None, embedding: str = "logit") -> Embedding:
    """Per-example gradient proxies of ``indices`` (default: the whole training set) at the current model.

    ``logit``: e = softmax(z) − onehot(y) (the official CRAIG and CREST proxy); ``last_layer``: the
    final linear layer's gradient [e, vec(e hᵀ)], kept in closed form. One no-grad forward in eval mode,
    counted as selection forward passes.
    """
    targets = ctx.train.targets if indices is None else ctx.train.targets[indices.to(ctx.train.targets.device)]
    out = ctx.forward(ctx.train, indices=indices, with_features=embedding == "last_layer")
    ctx.log.count_forward(len(targets))
    e = logit_gradients(out.logits, targets.to(out.logits.device))
    if embedding == "last_layer":
        assert out.features is not None
        return LastLayerGradients(e, out.features.float())
    return EuclideanPoints(e)


def uniform_subset(ctx: Context, size: int, generator: torch.Generator) -> Tensor:
    """``size`` training indices drawn uniformly without replacement."""
    return torch.randperm(len(ctx.train), generator=generator)[:size]
