"""Datasets for sgdwalk: a registry of loaders, the readers behind them, and the probe set.

`load_dataset(cfg.data)` returns a `Dataset` with train / val / test / probe `Split`s of
float32 inputs and int64 labels (or int64 token ids and next-token targets), checked by
`check_splits`. `data.name` is a registered name: digits (bundled with scikit-learn,
always available), mnist, fashion_mnist, cifar10 (official binary files, optionally
downloaded, always checksummed), synthetic (a generated Gaussian mixture), text
(characters of Debian's fortunes or of any UTF-8 file, for language models) and arrays (a
user's .npz file at `data.path`); or an import path `package.module:factory` to a function
(DataConfig) -> Dataset. Such a factory builds its Dataset with the helpers the built-in
loaders use, all exported here:

    def make(cfg):  # mypackage/data.py, used as data.name = "mypackage.data:make"
        x, y = ...  # float32 (N, *shape), int64 (N,)
        test, val, train = stratified_split(Split(x, y), (1000, 1000), seed=SPLIT_SEED)
        return assemble_dataset(cfg, train, val, test, num_classes=10, augment=None,
                                source="mine")
"""

from sgdwalk.data import (  # noqa: F401  (imported to register the loaders)
    arrays,
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
from sgdwalk.data.npz import read_npz
from sgdwalk.data.prepare import assemble_dataset, standardise
from sgdwalk.data.probe import probe_subset
from sgdwalk.data.registry import DATASETS, dataset_loader, load_dataset, register_dataset
from sgdwalk.data.roots import default_data_root
from sgdwalk.data.split import SPLIT_SEED, check_splits, stratified_order, stratified_split
from sgdwalk.data.types import Dataset, Split

__all__ = [
    "DATASETS",
    "SPLIT_SEED",
    "Dataset",
    "Split",
    "assemble_dataset",
    "augment_cifar",
    "check_splits",
    "dataset_loader",
    "default_data_root",
    "fetch",
    "load_dataset",
    "probe_subset",
    "read_cifar_binary",
    "read_idx",
    "read_npz",
    "register_dataset",
    "safe_extract",
    "standardise",
    "stratified_order",
    "stratified_split",
]
