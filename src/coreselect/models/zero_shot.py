"""A CLIP-style zero-shot classifier from a local checkpoint: logits = T · φ(x) · Wᵀ.

φ is an image encoder saved with ``torch.export`` (put any resizing and normalisation inside it: it
receives our input tensors as they are; export it with a dynamic batch dimension); W holds one
L2-normalised text embedding per class (the average over a prompt ensemble). As in the Bayesian
data-selection code, the image embedding is not normalised, so T interacts with its norm. Nothing is
downloaded: export both once where the weights are available.

    folder/image_encoder.pt2      torch.export.save(torch.export.export(encoder, (x,),
                                      dynamic_shapes=({0: torch.export.Dim("batch")},)), ...)
    folder/class_embeddings.pt    torch.save(W, ...)   # [classes, dim]
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from coreselect.errors import DatasetNotFoundError, InvalidInputError


class ZeroShotClassifier(nn.Module):
    """Logits T · encoder(x) · Wᵀ, W's rows L2-normalised."""

    def __init__(self, encoder: nn.Module, class_embeddings: Tensor, temperature: float = 1.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.register_buffer("class_embeddings", nn.functional.normalize(class_embeddings.float(), dim=1))
        self.temperature = temperature

    def forward(self, x: Tensor) -> Tensor:
        return self.temperature * self.encoder(x).float() @ self.class_embeddings.T


def load_zero_shot(folder: str | Path, temperature: float, num_classes: int) -> ZeroShotClassifier:
    """The classifier saved in ``folder`` (see the module docstring), checked against ``num_classes``."""
    folder = Path(folder)
    encoder_file, embeddings_file = folder / "image_encoder.pt2", folder / "class_embeddings.pt"
    for needed in (encoder_file, embeddings_file):
        if not needed.is_file():
            raise DatasetNotFoundError(f"zero-shot checkpoint file {needed} is missing; export the image encoder "
                                       "with torch.export.save and the class text embeddings with torch.save there")
    embeddings = torch.load(embeddings_file)
    if embeddings.ndim != 2 or embeddings.shape[0] != num_classes:
        raise InvalidInputError(f"{embeddings_file} holds embeddings of shape {tuple(embeddings.shape)}; "
                                f"expected one row per class ({num_classes})")
    return ZeroShotClassifier(torch.export.load(encoder_file).module(), embeddings, temperature)
