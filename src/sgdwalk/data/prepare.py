"""Steps every loader shares: hold out validation, standardise, trim, attach the probe set."""

from __future__ import annotations

import torch

from sgdwalk.config import DataConfig
from sgdwalk.data.probe import probe_subset
from sgdwalk.data.types import Augment, Dataset, Split
from sgdwalk.errors import ConfigError, DataError


def default_val_size(n_train_file: int, study_size: int = 5000) -> int:
    """Validation rows when `data.val_size` is None: the study's 5,000, or a tenth of the
    training file when that is smaller (so tiny fixture files still split sensibly)."""
    return min(study_size, n_train_file // 10)


def val_size(cfg: DataConfig, n_train_file: int) -> int:
    """`cfg.val_size` (or its default), checked to leave at least one training example."""
    v = default_val_size(n_train_file) if cfg.val_size is None else cfg.val_size
    if v >= n_train_file:
        raise ConfigError(
            f"data.val_size: expected < {n_train_file} (the {cfg.name} training file's size), "
            f"got {v}"
        )
    return v


def hold_out_tail(x: torch.Tensor, y: torch.Tensor, v: int) -> tuple[Split, Split]:
    """Split a training file into (train, val): val is its last `v` rows, in file order."""
    n = y.shape[0] - v
    return Split(x[:n], y[:n]), Split(x[n:], y[n:])


def standardise(train: Split, *others: Split) -> list[Split]:
    """Shift and scale every split by the training split's scalar pixel mean and std.

    x' = (x - m) / s with m = mean(train.x) and s = std(train.x) (population std, accumulated
    in float64), over all pixels and channels. Returns new Splits in the order given.
    """
    x = train.x
    n = x.numel()
    mean = x.sum(dtype=torch.float64) / n
    var = (x.square().sum(dtype=torch.float64) / n - mean**2).clamp_min(0)
    std = float(var.sqrt())
    if not std > 0:
        raise DataError(f"standardise: expected training pixels that vary, got std {std}")
    return [Split((s.x - float(mean)) / std, s.y) for s in (train, *others)]


def assemble_dataset(
    cfg: DataConfig,
    train: Split,
    val: Split,
    test: Split,
    num_classes: int,
    augment: Augment | None,
    source: str,
) -> Dataset:
    """The Dataset a run uses, from a loader's three splits: the step every built-in loader
    ends with, and the one an import-path factory can end with.

    Keeps the first `cfg.train_size` training examples (all when None), draws the probe set
    from them (`probe_subset(train, cfg.probe_size, cfg.probe_seed)`) and takes the input
    shape from train.x. `load_dataset` then runs `check_splits` on the result.

    Args:
        cfg: the data section of the run config (its name becomes the Dataset's).
        train, val, test: float32 inputs (N, *input_shape) and int64 labels (N,) each; val
            and test may have 0 rows.
        num_classes: labels lie in [0, num_classes).
        augment: (x (B, *input_shape), torch.Generator) -> augmented x, or None.
        source: where the data came from, for the run's record.

    Raises:
        ConfigError: `cfg.train_size` larger than the training split.
    """
    if cfg.train_size is not None:
        if cfg.train_size > len(train):
            raise ConfigError(
                f"data.train_size: expected <= {len(train)} (the {cfg.name} training split "
                f"after validation), got {cfg.train_size}"
            )
        # a copy, so the rest of the training file can be freed
        train = Split(train.x[: cfg.train_size].clone(), train.y[: cfg.train_size].clone())
    return Dataset(
        name=cfg.name,
        train=train,
        val=val,
        test=test,
        probe=probe_subset(train, cfg.probe_size, cfg.probe_seed),
        num_classes=num_classes,
        input_shape=tuple(train.x.shape[1:]),
        augment=augment,
        source=source,
    )
