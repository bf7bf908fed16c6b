"""Image folders (``<root>/<class>/<image>``) decoded when an item is read, standardised with statistics of one
streaming pass over the training images: a folder larger than memory trains, and one that fits is held in
memory by reading every item once (the same values either way)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from coreselect.data.formats import decode_image, image_mode, list_image_folder
from coreselect.data.statistics import channel_statistics
from coreselect.errors import InvalidInputError

BLOCK = 256  # images decoded at a time by the statistics pass


class ImageFolderRows(Dataset):
    """The images of one split folder; item ``i`` is ``((image / 255 − mean) / std, label)`` as float32. The
    colour mode is greyscale unless any image has colour (``mode``: the training split's, for the test split)."""

    def __init__(self, directory: str | Path, *, mean: Tensor | None = None, std: Tensor | None = None,
                 mode: str | None = None) -> None:
        self.directory = Path(directory)
        self.files, labels, self.classes = list_image_folder(self.directory)
        self.targets = torch.tensor(labels, dtype=torch.int64)
        self.mode = mode or image_mode(self.files)
        self.row_shape = decode_image(self.files[0], self.mode).shape
        if mean is None or std is None:
            mean, std = channel_statistics(self._blocks(), 255.0)  # decodes (and size-checks) every image
        self.mean, self.std = mean, std

    def __len__(self) -> int:
        return len(self.files)

    def _decode(self, index: int) -> np.ndarray:
        image = decode_image(self.files[index], self.mode)
        if image.shape != self.row_shape:
            raise InvalidInputError(f"{self.directory}: images differ in size ({self.files[index].name} is "
                                    f"{image.shape}, {self.files[0].name} {self.row_shape}); resize them to one size")
        return image

    def _blocks(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self), BLOCK):
            yield np.stack([self._decode(i) for i in range(start, min(start + BLOCK, len(self)))])

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        pixels = torch.from_numpy(self._decode(index)).float()
        return (pixels / 255.0 - self.mean) / self.std, int(self.targets[index])
