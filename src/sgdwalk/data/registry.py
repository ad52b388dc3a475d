"""The dataset registry: a name maps to a loader `(DataConfig) -> Dataset`.

`data.name` is either a registered name (the built-in datasets: one file each with one
`@register_dataset("name")` loader, imported in `sgdwalk/data/__init__.py`) or an import
path `package.module:factory` to a user's function `(DataConfig) -> Dataset`, which any
process can import from the config's text alone (see `sgdwalk.importpath`). Whatever the
loader, `load_dataset` checks the splits it returns (`check_splits`).
"""

from __future__ import annotations

from collections.abc import Callable

from sgdwalk.config import DataConfig
from sgdwalk.data.split import check_splits
from sgdwalk.data.types import Dataset
from sgdwalk.errors import ConfigError
from sgdwalk.importpath import resolve

Loader = Callable[[DataConfig], Dataset]

DATASETS: dict[str, Loader] = {}  # registry name -> loader; filled by @register_dataset
FACTORY = "a function (DataConfig) -> sgdwalk.data.Dataset"  # what an import path names


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Decorator that adds a loader to `DATASETS` under `name` (names must be unique)."""

    def add(loader: Loader) -> Loader:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")  # a bug, not user input
        DATASETS[name] = loader
        return loader

    return add


def dataset_loader(name: str) -> Loader:
    """The loader `data.name` names: a registered one, or the function at an import path
    (studies check every run's data.name with it before anything trains).

    Raises:
        ConfigError: see `sgdwalk.importpath.resolve`.
    """
    return resolve(name, DATASETS, "data.name", FACTORY)


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load the dataset `cfg.name` as described by the data section of the run config, and
    check its splits (`check_splits`).

    Raises:
        ConfigError: unknown name or import path, a factory that returns something other than
            a Dataset, or sizes (val_size, train_size) the data cannot meet.
        DataError: files missing, corrupt, of the wrong format or failing their checksum, or
            splits that fail `check_splits` (a class missing from val or test, non-finite
            inputs, an empty training split); labels outside [0, num_classes).
    """
    dataset = dataset_loader(cfg.name)(cfg)
    if not isinstance(dataset, Dataset):
        raise ConfigError(f"data.name: expected {cfg.name} to return a sgdwalk.data.Dataset "
                          f"(build it with assemble_dataset), got {type(dataset).__name__}")
    return check_splits(dataset)
