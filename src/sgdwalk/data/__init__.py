"""Datasets for sgdwalk: a registry of loaders, the readers behind them, and the probe set.

`load_dataset(cfg.data)` returns a `Dataset` with train / val / test / probe `Split`s of
float32 normalised inputs and int64 labels (or int64 token ids and next-token targets).
Registered names: digits (bundled with scikit-learn, always available), mnist,
fashion_mnist, cifar10 (official binary files, optionally downloaded with checksums),
synthetic (a generated Gaussian mixture) and text (characters of Debian's fortunes or of
any UTF-8 file, for language models).
"""

from sgdwalk.data import (  # noqa: F401  (imported to register the loaders)
    cifar,
    digits,
    mnist,
    synthetic,
    text,
)
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
