"""Data layer: in-memory tensor datasets, standard-format loaders, splits, label noise and imbalance."""

from coreselect.data.catalog import DATASETS, DataSplits, load_dataset, prepare_splits
from coreselect.data.corruption import NOISE_KINDS, add_label_noise, long_tailed_indices
from coreselect.data.dataset import InMemoryDataset
from coreselect.data.formats import load_cifar_pickles, load_idx_pair, load_image_folder, load_npz, read_idx
from coreselect.data.splits import stratified_split

__all__ = [
    "DATASETS",
    "NOISE_KINDS",
    "DataSplits",
    "InMemoryDataset",
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
