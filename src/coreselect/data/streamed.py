"""Any map-style ``torch.utils.data.Dataset`` of ``(input, label)`` items, read on demand.

Only the labels are held (O(n)); inputs are read when a batch or a selection forward asks for them, by the
main process or by ``workers`` persistent DataLoader worker processes (pinned memory when the data goes to a
GPU). ``ds[indices]`` gathers a batch as :class:`~coreselect.data.dataset.InMemoryDataset` does, so every
strategy and the trainer take either.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset, default_collate

from coreselect.data.dataset import InMemoryDataset
from coreselect.data.labels import Labelled, check_labels, class_names
from coreselect.errors import InvalidInputError

CHUNK = 256  # items per loader request when a gather or a forward is split among workers
RECENT_BYTES = 128 << 20  # the latest forwards are kept up to this size in all (a subset of one is not re-read)


class _Requests:
    """A batch sampler whose batches are set before each pass (a persistent loader re-reads it per ``iter``)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _Pool:
    """DataLoader worker processes that stay up between requests, and the batches they are reading ahead."""

    def __init__(self, dataset: Dataset, workers: int, pin: bool) -> None:
        self.requests = _Requests()
        self.loader = DataLoader(dataset, batch_sampler=self.requests, num_workers=workers, collate_fn=_collate,
                                 persistent_workers=True, pin_memory=pin)
        self.ahead: deque[list[int]] = deque()
        self.stream: Iterator[tuple[Tensor, Tensor]] | None = None

    def load(self, batches: list[list[int]]) -> Iterator[tuple[Tensor, Tensor]]:
        self.ahead.clear()  # a new pass over the workers drops what they were reading ahead
        self.requests.batches = batches
        yield from iter(self.loader)

    def read_ahead(self, batches: list[list[int]]) -> None:
        self.requests.batches = batches
        self.stream, self.ahead = iter(self.loader), deque(batches)

    def expects(self, items: list[int]) -> bool:
        return bool(self.ahead) and self.ahead[0] == items

    def next_ahead(self) -> tuple[Tensor, Tensor]:
        assert self.stream is not None and self.ahead
        self.ahead.popleft()
        return next(self.stream)


class _Recent:
    """What was read lately, by dataset row: the last gather (a batch, or an online strategy's candidates) and
    the latest forwards (selection forwards and evaluations, ``RECENT_BYTES`` in all, least recently used out).
    A request whose rows all lie in one of them reads nothing: CREST trains on and checks the random subsets
    it just forwarded, an online strategy trains on the candidates it just scored, evaluations repeat their
    split. Training batches of a pass replace only the last gather: they do not push forwards out."""

    def __init__(self) -> None:
        self.last: list[tuple[dict[int, int], Tensor]] = []
        self.forwards: list[tuple[dict[int, int], Tensor]] = []
        self.size = 0  # of the forwards

    def keep(self, items: list[int], inputs: Tensor, *, forward: bool = False) -> None:
        """Keep a gather (replacing the last one) or a forward's inputs (up to ``RECENT_BYTES``)."""
        if not items or _bytes(inputs) > RECENT_BYTES:
            return
        entry = (dict(zip(items, range(len(items)), strict=True)), inputs)
        if not forward:
            self.last = [entry]
            return
        self.forwards.insert(0, entry)
        self.size += _bytes(inputs)
        while self.size > RECENT_BYTES:
            self.size -= _bytes(self.forwards.pop()[1])

    def find(self, items: list[int]) -> Tensor | None:
        """The inputs of ``items``, if the last gather or one kept forward holds them all, else None."""
        for kept in (self.last, self.forwards):
            for place, (rows, inputs) in enumerate(kept):
                try:
                    positions = torch.tensor([rows[item] for item in items], dtype=torch.long)
                except KeyError:
                    continue
                kept.insert(0, kept.pop(place))  # a forward used again is the most recent
                return inputs[positions.to(inputs.device)]
        return None

    def holds(self, items: list[int]) -> bool:
        return bool(items) and any(all(map(rows.__contains__, items)) for rows, _ in self.last + self.forwards)


def _bytes(tensor: Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _collate(items: list[Any]) -> tuple[Tensor, Tensor]:
    """Stack ``(input, label)`` items, with a one-line error naming what does not fit."""
    try:
        x, y = default_collate(items)
    except (RuntimeError, TypeError, ValueError) as error:
        shapes = sorted({tuple(np.shape(item[0])) for item in items if isinstance(item, tuple | list) and item})
        raise InvalidInputError(
            f"dataset items must be (input, label) pairs of one input shape; got shapes {shapes[:4]} "
            f"({type(error).__name__}: {str(error).splitlines()[0]}); resize or pad in the dataset") from None
    return torch.as_tensor(x), torch.as_tensor(y)


def read_labels(dataset: Dataset, workers: int = 0) -> Tensor:
    """Every item's label, from the dataset's ``targets`` attribute (the torchvision convention) or one pass."""
    declared = getattr(dataset, "targets", None)
    if declared is not None:
        return _as_labels(torch.as_tensor(np.asarray(declared)))
    n = len(dataset)  # type: ignore[arg-type]
    loader = DataLoader(dataset, batch_size=CHUNK, num_workers=workers, collate_fn=_collate)
    labels = [y for _, y in loader]
    return _as_labels(torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64), n)


def _as_labels(labels: Tensor, n: int | None = None) -> Tensor:
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise InvalidInputError(f"dataset labels must be integer class indices, got {labels.dtype} values "
                                f"(e.g. {labels.flatten()[:3].tolist()}); return an int label per item")
    if labels.ndim != 1 or (n is not None and labels.shape[0] != n):
        raise InvalidInputError(f"dataset items must carry one integer label each; got labels of shape "
                                f"{tuple(labels.shape)} for {n} items")
    return labels.to(torch.int64)


@dataclass(frozen=True)
class StreamedDataset(Labelled):
    """A map-style Dataset of ``(input, label)`` as the library's training or test data (see the module docstring).

    ``rows`` selects and orders the dataset's items (a view: ``subset`` makes one without reading inputs);
    ``targets`` are the labels of those rows, ``clean_targets`` the labels before injected noise.
    """

    dataset: Dataset
    targets: Tensor
    num_classes: int
    classes: tuple[str, ...] = field(default=())
    clean_targets: Tensor | None = None
    rows: Tensor | None = None
    workers: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def wrap(cls, dataset: Dataset, num_classes: int | None = None, *, classes: Sequence[str] = (),
             workers: int = 0) -> StreamedDataset:
        """Wrap ``dataset``; the class count is ``num_classes``, else ``len(classes)``, else the largest label + 1."""
        if workers < 0:
            raise InvalidInputError(f"workers must be 0 (read in the main process) or more, got {workers}")
        targets = read_labels(dataset, workers)
        if num_classes is None:
            num_classes = len(classes) if classes else int(targets.max()) + 1 if len(targets) else 1
        return cls(dataset, targets, num_classes, tuple(classes), workers=workers)

    @classmethod
    def of(cls, data: InMemoryDataset, workers: int = 0) -> StreamedDataset:
        """``data``'s tensors read through a ``TensorDataset`` (the same examples, labels and clean labels)."""
        return cls(TensorDataset(data.inputs.cpu(), data.targets.cpu()), data.targets, data.num_classes,
                   data.classes, data.clean_targets, workers=workers, device=data.device)

    def __post_init__(self) -> None:
        check_labels(self.targets, self.num_classes)
        object.__setattr__(self, "classes", class_names(self.classes, self.num_classes))
        rows = len(self.dataset) if self.rows is None else len(self.rows)  # type: ignore[arg-type]
        if rows != len(self.targets):
            raise InvalidInputError(f"{rows} dataset items but {len(self.targets)} labels; give one label per item")

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __getstate__(self) -> dict[str, Any]:  # the worker pool stays with the process that made it
        return {k: v for k, v in self.__dict__.items() if k not in ("_workers", "_last")}

    # -- reading -----------------------------------------------------------------------------------
    def _items(self, indices: Tensor) -> list[int]:
        indices = torch.as_tensor(indices, dtype=torch.long).cpu()
        return (indices if self.rows is None else self.rows[indices]).tolist()

    def _pool(self) -> _Pool:
        """The persistent worker pool (made on first use, shared by copies of this dataset)."""
        pool = self.__dict__.get("_workers")
        if pool is None:
            pool = _Pool(self.dataset, self.workers, pin=self.device.type == "cuda")
            object.__setattr__(self, "_workers", pool)
        return pool

    def _load(self, batches: list[list[int]]) -> Iterator[tuple[Tensor, Tensor]]:
        """The collated items of each batch, in order, on ``device`` (any reading ahead is dropped)."""
        if self.workers == 0:
            parts: Iterator[tuple[Tensor, Tensor]] = (_collate([self.dataset[i] for i in b]) for b in batches)
        else:
            parts = self._pool().load(batches)
        for x, y in parts:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def expects(self, indices: Tensor) -> bool:
        """Whether ``indices`` is the next batch the workers are reading ahead."""
        return self.workers > 0 and self._pool().expects(self._items(indices))

    def read_ahead(self, batches: Sequence[Tensor]) -> None:
        """Start reading these batches in the workers (but those a kept request holds); gathering them in this
        order then takes what they read. A gather of anything else drops the rest. No effect without workers."""
        if self.workers == 0 or not batches:
            return
        recent, pool = self._recent(), self._pool()
        wanted = [items for b in batches if not recent.holds(items := self._items(b))]
        if wanted:
            pool.read_ahead(wanted)
        else:  # all of it was read lately: nothing for the workers to do
            pool.ahead.clear()

    def _recent(self) -> _Recent:
        recent = self.__dict__.get("_last")
        if recent is None:
            recent = _Recent()
            object.__setattr__(self, "_last", recent)
        return recent

    def holds(self, indices: Tensor) -> bool:
        """Whether one of the latest requests held every example at ``indices`` (a gather of them reads nothing)."""
        return self._recent().holds(self._items(indices))

    @property
    def reading_ahead(self) -> bool:
        """Whether the workers hold a plan of batches not yet gathered."""
        return self.workers > 0 and bool(self._pool().ahead)

    def __getitem__(self, indices: Tensor | Sequence[int]) -> tuple[Tensor, Tensor]:
        """The inputs and labels at ``indices`` (labels as held: noisy labels stay noisy)."""
        indices = torch.as_tensor(indices, dtype=torch.long).cpu()
        labels = self.targets[indices.to(self.targets.device)]
        items, recent = self._items(indices), self._recent()
        if (held := recent.find(items)) is not None:
            return held.to(self.device), labels
        if self.workers > 0 and self._pool().expects(items):  # the rows are already listed: no second lookup
            x, _ = self._pool().next_ahead()
        else:
            size = max(1, -(-len(items) // max(self.workers, 1))) if self.workers else len(items)
            parts = [x for x, _ in self._load([items[i:i + size] for i in range(0, len(items), size)])]
            x = torch.cat(parts) if parts else torch.empty(0, *self.input_shape)
        x = x.to(self.device, non_blocking=True)
        recent.keep(items, x)
        return x, labels

    def chunks(self, batch_size: int, indices: Tensor | None = None) -> Iterator[Tensor]:
        """The inputs at ``indices`` (default: all, in order), ``batch_size`` at a time, read ahead by the workers;
        kept when small enough, so that a later request within them reads nothing."""
        items = self._items(torch.arange(len(self)) if indices is None else indices)
        recent = self._recent()
        if (held := recent.find(items)) is not None:
            yield from held.split(batch_size)
            return
        kept: Tensor | None = None  # the whole request's inputs, when they fit: allocated once, filled in place
        filled = 0
        for x, _ in self._load([items[i:i + batch_size] for i in range(0, len(items), batch_size)]):
            if filled == 0 and len(x) and len(items) * _bytes(x) // len(x) <= RECENT_BYTES:
                kept = x.new_empty((len(items), *x.shape[1:]))
            if kept is not None:
                kept[filled : filled + len(x)] = x
            filled += len(x)
            yield x
        if kept is not None:
            recent.keep(items, kept, forward=True)

    # -- the InMemoryDataset interface ---------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        first = self._items(torch.zeros(1, dtype=torch.long))[0] if len(self) else 0
        return tuple(torch.as_tensor(np.asarray(self.dataset[first][0])).shape)

    def subset(self, indices: Tensor) -> StreamedDataset:
        """The examples at ``indices``, in that order (no input is read)."""
        indices = torch.as_tensor(indices, dtype=torch.long).cpu()
        rows = indices if self.rows is None else self.rows[indices]
        clean = None if self.clean_targets is None else self.clean_targets[indices.to(self.targets.device)]
        return self._derive(targets=self.targets[indices.to(self.targets.device)], clean_targets=clean, rows=rows)

    def with_targets(self, targets: Tensor) -> StreamedDataset:
        """A copy with new labels; the current labels are kept as the clean ones."""
        clean = self.targets if self.clean_targets is None else self.clean_targets
        return self._derive(targets=targets, clean_targets=clean)

    def to(self, device: torch.device | str) -> StreamedDataset:
        """A copy whose batches and labels land on ``device`` (the dataset itself stays where it is)."""
        device = torch.device(device)
        if device == self.device:
            return self
        clean = None if self.clean_targets is None else self.clean_targets.to(device)
        return self._derive(targets=self.targets.to(device), clean_targets=clean, device=device)

    def _derive(self, **changes: Any) -> StreamedDataset:
        """A copy with ``changes`` that shares this one's worker pool (the same dataset is read)."""
        copy = replace(self, **changes)
        for shared in ("_workers", "_last"):
            if shared in self.__dict__:
                object.__setattr__(copy, shared, self.__dict__[shared])
        return copy
