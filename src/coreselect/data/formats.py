"""Readers for the on-disk formats users already have.

Each reader returns numpy arrays ``(inputs, labels)``; inputs are ``N×C×H×W`` for images (``N×D`` for
tabular ``.npz`` data), labels are int64. Normalisation happens in :mod:`coreselect.data.catalog`.
"""

from __future__ import annotations

import gzip
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from coreselect.errors import DatasetNotFoundError, InvalidInputError

if TYPE_CHECKING:
    from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (the MNIST family's format), gzipped or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise InvalidInputError(f"{path} is not an idx file (bad magic number)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    offset = 4 + 4 * ndim
    if len(raw) - offset != expected:
        raise InvalidInputError(f"{path}: header promises {dims} but holds {len(raw) - offset} bytes")
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(dims).astype(dtype.newbyteorder("="))


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise DatasetNotFoundError(f"{directory}: missing {stem}[.gz]")


def load_idx_pair(directory: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of ``split`` ("train" or "t10k") from an MNIST-style idx directory."""
    directory = Path(directory)
    images = read_idx(_find(directory, f"{split}-images-idx3-ubyte"))
    labels = read_idx(_find(directory, f"{split}-labels-idx1-ubyte")).astype(np.int64)
    return images[:, None, :, :], labels


def _channels_first(x: np.ndarray, source: str) -> np.ndarray:
    if x.ndim == 2:  # tabular features
        return x
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x
    raise InvalidInputError(f"{source}: inputs must be N×D, N×H×W, N×C×H×W or N×H×W×C, got shape {x.shape}")


def load_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Arrays ``x`` (numeric inputs) and ``y`` (integer labels) of an ``.npz`` file, and its class names
    (an optional ``classes`` array of strings, one per class)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"{path} does not exist; write it with numpy.savez(path, x=inputs, y=labels)")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"x", "y"} - set(data.files)
            if missing:
                raise InvalidInputError(f"{path} lacks array(s) {sorted(missing)}; save inputs as x and labels as y")
            x, y = data["x"], data["y"]
            classes = tuple(str(c) for c in data["classes"]) if "classes" in data.files else ()
    except InvalidInputError:
        raise
    except ValueError as err:  # object arrays, which cannot be read without unpickling
        raise InvalidInputError(f"{path}: {err}; save numeric inputs and integer labels") from err
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise InvalidInputError(f"{path} is not a readable .npz file ({err}); write it again with numpy.savez") from err
    if x.dtype.kind not in "biuf":
        raise InvalidInputError(f"{path}: inputs x must be numeric, got dtype {x.dtype}; convert them to numbers")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise InvalidInputError(f"{path}: y must be a 1-d integer array, got {y.dtype} of shape {y.shape}")
    return _channels_first(x, str(path)), y.astype(np.int64), classes


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def load_cifar_pickles(directory: str | Path) -> dict[str, object]:
    """CIFAR-10 (``data_batch_1..5``, ``test_batch``) or CIFAR-100 (``train``, ``test``) python pickles.

    Returns a dict with ``train`` and ``test`` ``(x, y)`` pairs and the ``classes`` names.
    """
    directory = Path(directory)
    if (directory / "data_batch_1").is_file():
        files = [directory / f"data_batch_{i}" for i in range(1, 6)]
        parts = [_unpickle(f) for f in files if f.is_file()]
        test = _unpickle(directory / "test_batch")
        key, meta_file, names_key = "labels", "batches.meta", "label_names"
    elif (directory / "train").is_file():
        parts = [_unpickle(directory / "train")]
        test = _unpickle(directory / "test")
        key, meta_file, names_key = "fine_labels", "meta", "fine_label_names"
    else:
        raise DatasetNotFoundError(
            f"{directory} holds no CIFAR python pickles (data_batch_1.. or train/test); "
            "point --data-root at the extracted cifar-10-batches-py or cifar-100-python folder"
        )

    def to_arrays(batches: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches]).reshape(-1, 3, 32, 32)
        y = np.concatenate([np.asarray(b[key], dtype=np.int64) for b in batches])
        return x, y

    meta = directory / meta_file
    classes = tuple(_unpickle(meta)[names_key]) if meta.is_file() else ()
    return {"train": to_arrays(parts), "test": to_arrays([test]), "classes": classes}


def _open_image(path: Path) -> Image.Image:
    """The decoded image at ``path``; a file that is not one, or is cut short, is named in the error."""
    from PIL import Image

    try:
        image = Image.open(path)
        image.load()
    except (OSError, SyntaxError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
        raise InvalidInputError(f"{path} is not a readable image ({err}); remove or replace it") from err
    return image


def list_image_folder(directory: str | Path) -> tuple[list[Path], list[int], tuple[str, ...]]:
    """The image files under ``directory/<class name>/``, their class indices, and the class names (sorted)."""
    directory = Path(directory)
    class_dirs = sorted(p for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else []
    if not class_dirs:
        raise DatasetNotFoundError(f"{directory} has no class sub-folders; lay images out as <root>/<class>/<image>")
    files, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        for file in sorted(class_dir.iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                files.append(file)
                labels.append(label)
    if not files:
        raise DatasetNotFoundError(f"{directory} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files, labels, tuple(p.name for p in class_dirs)


def image_mode(files: list[Path]) -> str:
    """``L`` when every image is greyscale, else ``RGB`` (read from the files' headers, nothing decoded)."""
    from PIL import Image

    def mode(path: Path) -> str:
        try:
            with Image.open(path) as image:
                return image.mode
        except (OSError, SyntaxError, ValueError) as err:
            raise InvalidInputError(f"{path} is not a readable image ({err}); remove or replace it") from err

    return "L" if all(mode(f) in ("L", "1", "I;16") for f in files) else "RGB"


def decode_image(path: Path, mode: str) -> np.ndarray:
    """The image at ``path`` in ``mode``, channels first (C, H, W), as stored (uint8)."""
    return _channels_first(np.asarray(_open_image(path).convert(mode))[None], str(path))[0]


def load_image_folder(directory: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Images laid out as ``directory/<class name>/<image>``, decoded at once; classes sorted by name.

    All images must have the same size; greyscale unless any image has colour.
    """
    files, labels, classes = list_image_folder(directory)
    mode = image_mode(files)
    arrays = [decode_image(f, mode) for f in files]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise InvalidInputError(f"{directory}: images differ in size {sorted(shapes)}; resize them to one size")
    return np.stack(arrays), np.asarray(labels, dtype=np.int64), classes
