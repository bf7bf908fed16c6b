"""Named datasets: where their files are, how to read them, and how a run's splits are prepared."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from coreselect.data import formats
from coreselect.data.corruption import add_label_noise, long_tailed_indices
from coreselect.data.dataset import InMemoryDataset
from coreselect.data.examples import Examples
from coreselect.data.image_folder import ImageFolderRows
from coreselect.data.npy import NpyRows
from coreselect.data.splits import stratified_split
from coreselect.data.streamed import StreamedDataset
from coreselect.errors import DatasetNotFoundError, InvalidInputError, UnknownNameError
from coreselect.notes import LOG
from coreselect.seeding import derive_seed

DATA_ENV = "CORESELECT_DATA"
IN_MEMORY_BYTES = 2 << 30  # data read on demand is held in memory when its float32 inputs fit in this
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


@dataclass(frozen=True)
class DataSplits:
    """The train, optional validation and holdout, and test parts of a dataset."""

    name: str
    train: Examples
    test: Examples
    val: Examples | None = None
    holdout: Examples | None = None

    def streamed(self, workers: int) -> DataSplits:
        """Every split read on demand through a DataLoader with ``workers`` processes (0: the main process)."""
        def stream(part: Examples | None) -> Examples | None:
            if isinstance(part, InMemoryDataset):
                return StreamedDataset.of(part, workers)
            return part  # already read on demand (or absent)

        train, test = stream(self.train), stream(self.test)
        assert train is not None and test is not None
        return replace(self, train=train, test=test, val=stream(self.val), holdout=stream(self.holdout))

    def in_memory(self, limit_bytes: int = IN_MEMORY_BYTES) -> DataSplits:
        """Every split read on demand whose float32 inputs fit in ``limit_bytes`` read once into tensors (the same
        values; larger ones stay on demand)."""
        def held(part: Examples | None) -> Examples | None:
            if not isinstance(part, StreamedDataset):
                return part
            if len(part) * int(np.prod(part.input_shape)) * 4 > limit_bytes:
                return part
            inputs = torch.cat(list(part.chunks(1024))) if len(part) else torch.zeros(0, *part.input_shape)
            return InMemoryDataset(inputs, part.targets, part.num_classes, part.classes, part.clean_targets)

        train, test = held(self.train), held(self.test)
        assert train is not None and test is not None
        return replace(self, train=train, test=test, val=held(self.val), holdout=held(self.holdout))

    def to(self, device: torch.device | str) -> DataSplits:
        val = None if self.val is None else self.val.to(device)
        holdout = None if self.holdout is None else self.holdout.to(device)
        return replace(self, train=self.train.to(device), test=self.test.to(device), val=val, holdout=holdout)


Arrays = tuple[np.ndarray, np.ndarray]


def _candidates(root: str | Path | None, subfolder: str) -> list[Path]:
    """Where to look: an explicit root, else ``$CORESELECT_DATA/<subfolder>`` and ``$CORESELECT_DATA``."""
    if root is not None:
        return [Path(root)]
    env = os.environ.get(DATA_ENV)
    return [Path(env) / subfolder, Path(env)] if env else []


def _fashion_mnist(root: str | Path | None) -> tuple[Arrays, Arrays, tuple[str, ...]]:
    places = _candidates(root, "fashion-mnist") or [FASHION_MNIST_DIR]
    for place in places:
        try:
            return formats.load_idx_pair(place, "train"), formats.load_idx_pair(place, "t10k"), FASHION_MNIST_CLASSES
        except (DatasetNotFoundError, FileNotFoundError, NotADirectoryError):
            continue
    raise DatasetNotFoundError(
        f"Fashion-MNIST idx files not found in {', '.join(map(str, places))}; install Debian's package "
        f"(sudo apt-get install dataset-fashion-mnist) or point --data-root or ${DATA_ENV} at a folder "
        "holding train-images-idx3-ubyte.gz and its siblings"
    )


def _require(root: str | Path | None, subfolder: str, what: str) -> Path:
    for place in _candidates(root, subfolder):
        if place.exists():
            return place
    raise DatasetNotFoundError(f"no {what} found; pass --data-root (or set ${DATA_ENV}) to the folder holding it")


def _idx(root: str | Path | None) -> tuple[Arrays, Arrays, tuple[str, ...]]:
    place = _require(root, "mnist", "idx dataset (train-images-idx3-ubyte[.gz] and siblings)")
    return formats.load_idx_pair(place, "train"), formats.load_idx_pair(place, "t10k"), ()


def _cifar(subfolder: str, classes: int) -> Callable[[str | Path | None], tuple[Arrays, Arrays, tuple[str, ...]]]:
    def load(root: str | Path | None) -> tuple[Arrays, Arrays, tuple[str, ...]]:
        place = _require(root, subfolder, f"CIFAR python pickles ({subfolder})")
        data = formats.load_cifar_pickles(place)
        names = data["classes"] or tuple(str(c) for c in range(classes))  # the meta file may be missing
        return data["train"], data["test"], names  # type: ignore[return-value]

    return load


def _npz(root: str | Path | None) -> tuple[Arrays, Arrays, tuple[str, ...]]:
    place = _require(root, "npz", "folder with train.npz and test.npz")
    *train, classes = formats.load_npz(place / "train.npz")
    *test, _ = formats.load_npz(place / "test.npz")
    return (train[0], train[1]), (test[0], test[1]), classes


IN_MEMORY: dict[str, Callable[[str | Path | None], tuple[Arrays, Arrays, tuple[str, ...]]]] = {
    "fashion-mnist": _fashion_mnist,
    "idx": _idx,
    "cifar10": _cifar("cifar-10-batches-py", 10),
    "cifar100": _cifar("cifar-100-python", 100),
    "npz": _npz,
}


def _npy(root: str | Path | None, num_classes: int | None) -> DataSplits:
    """``<root>/train_x.npy``, ``train_y.npy``, ``test_x.npy``, ``test_y.npy`` read on demand (larger than memory
    is fine), standardised with the training part's statistics; class names from ``classes.txt`` if present."""
    place = _require(root, "npy", "folder with train_x.npy, train_y.npy, test_x.npy, test_y.npy")
    names_file = place / "classes.txt"
    classes = tuple(names_file.read_text().split()) if names_file.is_file() else ()
    count = _class_count("npy", classes, num_classes)
    train = NpyRows(place / "train_x.npy", place / "train_y.npy")
    test = NpyRows(place / "test_x.npy", place / "test_y.npy", mean=train.mean, std=train.std)
    if train.row_shape != test.row_shape:
        raise InvalidInputError(f"npy: train inputs {train.row_shape} and test inputs {test.row_shape} differ")
    for split, rows in (("train", train), ("test", test)):
        _check_arrays("npy", split, np.zeros((len(rows), 0)), rows.targets.numpy(), count)
    return DataSplits("npy", train=StreamedDataset.wrap(train, count, classes=classes),
                      test=StreamedDataset.wrap(test, count, classes=classes))


def _image_folder(root: str | Path | None, num_classes: int | None) -> DataSplits:
    """``<root>/train/<class>/*`` and ``<root>/test/<class>/*``, decoded when read (:class:`ImageFolderRows`)."""
    place = _require(root, "images", "image folder (<root>/train/<class>/*, <root>/test/<class>/*)")
    train = ImageFolderRows(place / "train")
    test = ImageFolderRows(place / "test", mean=train.mean, std=train.std, mode=train.mode)
    if test.classes != train.classes:
        raise InvalidInputError(f"{place}: train classes {train.classes} differ from test classes {test.classes}")
    if test.row_shape != train.row_shape:
        raise InvalidInputError(f"imagefolder: train images {train.row_shape} and test images {test.row_shape} "
                                "differ in size; resize them to one size")
    count = _class_count("imagefolder", train.classes, num_classes)
    _warn_empty_classes("imagefolder", train.targets.numpy(), count, train.classes)
    return DataSplits("imagefolder", train=StreamedDataset.wrap(train, count, classes=train.classes),
                      test=StreamedDataset.wrap(test, count, classes=train.classes))


ON_DEMAND: dict[str, Callable[[str | Path | None, int | None], DataSplits]] = {"npy": _npy,
                                                                               "imagefolder": _image_folder}
DATASETS = [*IN_MEMORY, *ON_DEMAND]  # every dataset name


def _standardiser(x_train: np.ndarray) -> Callable[[np.ndarray], Tensor]:
    """Per-channel (per-feature for tabular data) standardisation with the training statistics."""
    scale = 255.0 if x_train.dtype == np.uint8 else 1.0
    reduce_axes = (0, *range(2, x_train.ndim))
    t = torch.from_numpy(np.ascontiguousarray(x_train)).float().div_(scale)
    mean = t.mean(dim=reduce_axes, keepdim=True)
    std = t.std(dim=reduce_axes, keepdim=True).clamp_min(1e-8)

    def apply(x: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).float().div_(scale).sub_(mean).div_(std)

    return apply


def _class_count(name: str, classes: tuple[str, ...], num_classes: int | None) -> int:
    """The number of classes: given, else declared by the data (never guessed from the largest label)."""
    if num_classes is not None:
        if num_classes < 1:
            raise InvalidInputError(f"--num-classes must be positive, got {num_classes}")
        if classes and len(classes) != num_classes:
            raise InvalidInputError(f"{name} declares {len(classes)} classes but --num-classes is {num_classes}; "
                                    "drop --num-classes or fix the data's class list")
        return num_classes
    if not classes:
        raise InvalidInputError(f"{name} data declares no classes; pass --num-classes N (labels 0..N-1), or save "
                                "the class names in the .npz as `classes`")
    return len(classes)


def _check_arrays(name: str, split: str, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
    if len(x) == 0:
        raise InvalidInputError(f"{name}: the {split} split holds no examples; give it at least one")
    if x.dtype.kind not in "biuf":
        raise InvalidInputError(f"{name}: {split} inputs have dtype {x.dtype}; inputs must be numeric")
    outside = np.unique(y[(y < 0) | (y >= num_classes)])
    if len(outside):
        shown = ", ".join(str(v) for v in outside[:5]) + (" ..." if len(outside) > 5 else "")
        raise InvalidInputError(f"{name}: {split} labels {shown} lie outside the {num_classes} classes "
                                f"0..{num_classes - 1}; fix the labels or pass the right --num-classes")


def _warn_empty_classes(name: str, y_train: np.ndarray, count: int, classes: tuple[str, ...]) -> None:
    empty = np.flatnonzero(np.bincount(y_train, minlength=count) == 0)
    if len(empty):
        names = classes or tuple(str(c) for c in range(count))
        LOG.warning("%s: class(es) %s have no training examples; the model can never learn them",
                    name, ", ".join(names[c] for c in empty[:10]))


def load_dataset(name: str, root: str | Path | None = None, num_classes: int | None = None) -> DataSplits:
    """Load a named dataset as standardised float tensors (train statistics) with train and test parts.

    The class count is ``num_classes`` if given, else the classes the data declares; a label outside it is
    an error. A class without training examples is reported (a warning, not an error).
    """
    if name in ON_DEMAND:
        return ON_DEMAND[name](root, num_classes)
    if name not in IN_MEMORY:
        raise UnknownNameError("dataset", name, DATASETS)
    (x_train, y_train), (x_test, y_test), classes = IN_MEMORY[name](root)
    count = _class_count(name, classes, num_classes)
    _check_arrays(name, "train", x_train, y_train, count)
    _check_arrays(name, "test", x_test, y_test, count)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise InvalidInputError(f"{name}: train inputs {x_train.shape[1:]} and test inputs {x_test.shape[1:]} differ")
    _warn_empty_classes(name, y_train, count, classes)
    standardise = _standardiser(x_train)

    def make(x: np.ndarray, y: np.ndarray) -> InMemoryDataset:
        return InMemoryDataset(standardise(x), torch.from_numpy(y), count, classes)

    return DataSplits(name=name, train=make(x_train, y_train), test=make(x_test, y_test))


def prepare_splits(
    splits: DataSplits,
    *,
    val_fraction: float = 0.0,
    label_noise: float = 0.0,
    noise_kind: str = "symmetric",
    imbalance_ratio: float = 1.0,
    holdout_fraction: float = 0.0,
    seed: int = 0,
) -> DataSplits:
    """Hold out a stratified validation split, make the training part long-tailed and/or noisy, then hold
    out a stratified ``holdout_fraction`` of it (same distribution, same noise; for irreducible-loss and
    validation models — the strategies train on the rest).

    Validation and test labels stay clean; the training part keeps its clean labels for auditing. Each step
    draws from its own stream derived from ``seed``.
    """
    train, val = splits.train, None
    if val_fraction > 0:
        kept, held_out = stratified_split(train.targets, val_fraction, derive_seed(seed, "validation-split"))
        train, val = train.subset(kept), train.subset(held_out)
    if imbalance_ratio != 1.0:
        kept = long_tailed_indices(train.targets, train.num_classes, imbalance_ratio, derive_seed(seed, "imbalance"))
        train = train.subset(kept)
    if label_noise > 0:
        noise_seed = derive_seed(seed, "label-noise")
        noisy = add_label_noise(train.targets, train.num_classes, label_noise, noise_kind, noise_seed)
        train = train.with_targets(noisy.to(train.device))
    holdout = None
    if holdout_fraction > 0:
        kept, held_out = stratified_split(train.targets, holdout_fraction, derive_seed(seed, "holdout-split"))
        train, holdout = train.subset(kept), train.subset(held_out)
    return replace(splits, train=train, val=val, holdout=holdout)
