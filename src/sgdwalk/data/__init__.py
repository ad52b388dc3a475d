"""Datasets for sgdwalk: a registry of loaders, the readers behind them, and the probe set.

`load_dataset(cfg.data)` returns a `Dataset` with train / val / test / probe `Split`s of
float32 normalised inputs and int64 labels. Registered names: digits (bundled with
scikit-learn, always available), mnist, fashion_mnist, cifar10 (official binary files,
optionally downloaded with checksums) and synthetic (a generated Gaussian mixture).
"""

from sgdwalk.data import cifar, digits, mnist, synthetic  # noqa: F401  (register the loaders)
from sgdwalk.data.augment import augment_cifar
from sgdwalk.data.cifar import read_cifar_binary
from sgdwalk.data.download import fetch
from sgdwalk.data.extract import safe_extract
from sgdwalk.data.idx import read_idx
from sgdwalk.data.probe import probe_subset
from sgdwalk.data.registry import DATASETS, load_dataset, register_dataset
from sgdwalk.data.roots import default_data_root
from sgdwalk.data.types import Dataset, Split

__all__ = [
    "DATASETS",
    "Dataset",
    "Split",
    "augment_cifar",
    "default_data_root",
    "fetch",
    "load_dataset",
    "probe_subset",
    "read_cifar_binary",
    "read_idx",
    "register_dataset",
    "safe_extract",
]
