"""The dataset registry: a name maps to a loader `(DataConfig) -> Dataset`.

Adding a dataset is one file with one `@register_dataset("name")` loader, plus an import
line in `sgdwalk/data/__init__.py` so the registration runs.
"""

from __future__ import annotations

from collections.abc import Callable

from sgdwalk.config import DataConfig
from sgdwalk.data.split import check_splits
from sgdwalk.data.types import Dataset
from sgdwalk.errors import ConfigError

Loader = Callable[[DataConfig], Dataset]

DATASETS: dict[str, Loader] = {}  # registry name -> loader; filled by @register_dataset


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Decorator that adds a loader to `DATASETS` under `name` (names must be unique)."""

    def add(loader: Loader) -> Loader:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")  # a bug, not user input
        DATASETS[name] = loader
        return loader

    return add


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load the dataset `cfg.name` as described by the data section of the run config, and
    check its splits (`check_splits`).

    Raises:
        ConfigError: unknown name, a loader that returns something other than a Dataset, or
            sizes (val_size, train_size) the data cannot meet.
        DataError: files missing, corrupt, of the wrong format or failing their checksum, or
            splits that fail `check_splits` (a class missing from val or test, non-finite
            inputs, an empty training split); labels outside [0, num_classes).
    """
    dataset = dataset_loader(cfg.name)(cfg)
    if not isinstance(dataset, Dataset):
        raise ConfigError(f"data.name: expected {cfg.name} to return a sgdwalk.data.Dataset "
                          f"(build it with assemble_dataset), got {type(dataset).__name__}")
    return check_splits(dataset)


def dataset_loader(name: str) -> Loader:
    """The loader registered as `name`; a one-line ConfigError names the known ones (studies
    check every run's data.name with it before anything trains)."""
    if name not in DATASETS:
        raise ConfigError(f"data.name: expected one of {', '.join(sorted(DATASETS))}, got {name!r}")
    return DATASETS[name]
