"""``.npy`` arrays larger than memory: rows read from the file on demand, standardised with statistics of one
streaming pass, so that nothing holds the inputs in RAM.

Rows are read with ``pread`` rather than through a memory map: pages of a map count in the process's resident
memory once touched, so a pass over a map as large as the disk would look (and, under pressure, act) like
loading it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from coreselect.data.statistics import channel_statistics
from coreselect.errors import DatasetNotFoundError, InvalidInputError

BLOCK_BYTES = 64 << 20  # the statistics pass reads this much at a time


def _header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of a C-ordered ``.npy`` file (mapped, never touched, then unmapped)."""
    try:
        mapped = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as error:
        raise InvalidInputError(f"{path} is not a .npy file ({error}); save it with numpy.save") from None
    if not isinstance(mapped, np.memmap) or mapped.ndim < 1:
        raise InvalidInputError(f"{path} holds no array of rows; save one array with numpy.save")
    if not mapped.flags.c_contiguous:
        raise InvalidInputError(f"{path} is not stored in C order; save np.ascontiguousarray(x) with numpy.save")
    header = (tuple(mapped.shape), mapped.dtype, int(mapped.offset))
    del mapped
    return header


class NpyRows(Dataset):
    """Rows of an ``.npy`` input array and their labels (an ``.npy`` of integers, held in memory): item ``i`` is
    ``((x[i] / scale − mean) / std, y[i])`` as float32, with ``scale`` 255 for ``uint8`` inputs."""

    def __init__(self, inputs: str | Path, labels: str | Path, mean: Tensor | None = None,
                 std: Tensor | None = None) -> None:
        self.path = Path(inputs)
        self._file: tuple[int, int] | None = None  # (pid, descriptor): each worker process opens its own
        for path in (self.path, Path(labels)):
            if not path.is_file():
                raise DatasetNotFoundError(f"{path} not found; save the inputs and labels with numpy.save")
        self.shape, self.dtype, self.offset = _header(self.path)
        if self.dtype.kind not in "biuf":
            raise InvalidInputError(f"{self.path}: inputs have dtype {self.dtype}; inputs must be numeric")
        targets = np.load(labels)
        if targets.dtype.kind not in "iu" or targets.ndim != 1:
            raise InvalidInputError(f"{labels}: labels must be a 1-d integer array, got {targets.dtype} of shape "
                                    f"{targets.shape}")
        if len(targets) != self.shape[0]:
            raise InvalidInputError(f"{self.path} holds {self.shape[0]} inputs but {labels} {len(targets)} labels")
        self.targets = torch.from_numpy(targets.astype(np.int64))
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.scale = 255.0 if self.dtype == np.uint8 else 1.0
        if mean is None or std is None:
            mean, std = self.statistics()
        self.mean, self.std = mean, std

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None}

    def _descriptor(self) -> int:
        if self._file is None or self._file[0] != os.getpid():
            self._file = (os.getpid(), os.open(self.path, os.O_RDONLY))
        return self._file[1]

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as stored, read from the file (not mapped)."""
        start, stop = max(0, start), min(stop, len(self))
        count = max(0, stop - start)
        raw = os.pread(self._descriptor(), count * self.row_bytes, self.offset + start * self.row_bytes)
        return np.frombuffer(raw, dtype=self.dtype).reshape(count, *self.row_shape)

    def statistics(self) -> tuple[Tensor, Tensor]:
        """Per-channel (axis 1) mean and standard deviation of the scaled inputs, in one streaming pass."""
        per_block = max(1, BLOCK_BYTES // max(self.row_bytes, 1))
        blocks = (self.rows(start, start + per_block) for start in range(0, len(self), per_block))
        return channel_statistics(blocks, self.scale)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        row = torch.from_numpy(self.rows(index, index + 1)[0].astype(np.float32))
        return (row / self.scale - self.mean) / self.std, int(self.targets[index])
