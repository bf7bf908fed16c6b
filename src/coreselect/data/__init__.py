"""Data layer: in-memory tensors, any torch Dataset read on demand, standard-format loaders, splits, label noise
and imbalance."""

from coreselect.data.catalog import DATASETS, DataSplits, load_dataset, prepare_splits
from coreselect.data.corruption import NOISE_KINDS, add_label_noise, long_tailed_indices
from coreselect.data.dataset import InMemoryDataset
from coreselect.data.examples import Examples
from coreselect.data.formats import load_cifar_pickles, load_idx_pair, load_image_folder, load_npz, read_idx
from coreselect.data.splits import stratified_split
from coreselect.data.streamed import StreamedDataset

__all__ = [
    "DATASETS",
    "NOISE_KINDS",
    "DataSplits",
    "Examples",
    "InMemoryDataset",
    "StreamedDataset",
    "add_label_noise",
    "load_cifar_pickles",
    "load_dataset",
    "load_idx_pair",
    "load_image_folder",
    "load_npz",
    "long_tailed_indices",
    "prepare_splits",
    "read_idx",
    "stratified_split",
]
