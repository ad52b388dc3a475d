"""A user's own arrays from one .npz file, with no code: `data.name = "arrays"` and
`data.path = "mine.npz"` (written by numpy.savez or savez_compressed).

Arrays: x_train and y_train, required; x_val with y_val and x_test with y_test, optional,
each pair together. x: float (any width) or uint8, shape (N, *input_shape); uint8 is scaled
to [0, 1] by x / 255, floats are used as they are (cast to float32; normalise them
yourself). y: integers, shape (N,); K = max(y_train) + 1 classes, and every label of every
split must lie in [0, K).

A split the file does not hold is cut out of the training arrays by `stratified_split`
with the fixed SPLIT_SEED, so every run of every seed sees the same split and each part
holds every class in its share: test first (`data.test_size`, default a tenth of the
training arrays, at most 5,000), then validation (`data.val_size`, the same default).
The rest of the training arrays, in that stratified order, is the training split; when
the file holds all three splits nothing is cut or reordered. Setting `data.val_size` or
`data.test_size` for a split the file holds is an error (it would be ignored). No
augmentation; `data.train_size` then keeps the first n of the training split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sgdwalk.config import DataConfig
from sgdwalk.data.npz import read_npz
from sgdwalk.data.prepare import assemble_dataset, default_val_size
from sgdwalk.data.registry import register_dataset
from sgdwalk.data.split import MAX_CLASSES, SPLIT_SEED, stratified_split
from sgdwalk.data.types import Dataset, Split
from sgdwalk.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")
KEYS = tuple(f"{axis}_{split}" for split in SPLITS for axis in ("x", "y"))


@register_dataset("arrays")
def load_arrays(cfg: DataConfig) -> Dataset:
    """The dataset in the .npz file at `cfg.path` (see the module docstring)."""
    if cfg.path is None:
        raise ConfigError('data.path: expected the .npz file of x_train, y_train (with '
                          'data.name = "arrays"), got none')
    path = Path(cfg.path).expanduser()
    arrays = read_npz(path)
    unknown = sorted(set(arrays) - set(KEYS))
    if unknown:
        raise DataError(f"{path}: expected arrays named {', '.join(KEYS)}, got {unknown[0]!r}")
    given = {}
    for name in SPLITS:
        present = [key for key in (f"x_{name}", f"y_{name}") if key in arrays]
        if len(present) == 1 or (name == "train" and len(present) < 2):
            raise DataError(f"{path}: expected x_{name} and y_{name} together, got "
                            f"{' '.join(present) or 'neither'}")
        if present:
            given[name] = to_split(path, name, arrays[f"x_{name}"], arrays[f"y_{name}"])
    del arrays
    train, val, test = held_out(cfg, path, given)
    num_classes = int(given["train"].y.max()) + 1
    return assemble_dataset(cfg, train, val, test, num_classes=num_classes, augment=None,
                            source=str(path))


def to_split(path: Path, name: str, x: np.ndarray, y: np.ndarray) -> Split:
    """x (N, ...) float or uint8 -> float32 (uint8 / 255); y (N,) integers -> int64."""
    if x.dtype.kind != "f" and x.dtype != np.uint8:
        raise DataError(f"{path}: expected x_{name} of a float dtype or uint8, got {x.dtype}")
    if y.dtype.kind not in "iu":
        raise DataError(f"{path}: expected y_{name} of an integer dtype, got {y.dtype}")
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or (name == "train" and not len(y)):
        raise DataError(f"{path}: expected x_{name} of shape (N, ...) and y_{name} of shape "
                        f"(N,) with N {'>= 1' if name == 'train' else '>= 0'}, got "
                        f"{x.shape} and {y.shape}")
    labels = torch.from_numpy(y.astype(np.int64))  # uint64 above 2**63 wraps negative
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < MAX_CLASSES:
        raise DataError(f"{path}: expected y_{name} of labels in [0, {MAX_CLASSES}), got "
                        f"[{int(labels.min())}, {int(labels.max())}]")
    inputs = torch.from_numpy(x).to(torch.float32)
    if x.dtype == np.uint8:
        inputs = inputs.div_(255.0)
    return Split(inputs, labels)


def held_out(cfg: DataConfig, path: Path, given: dict[str, Split]) -> tuple[Split, ...]:
    """(train, val, test): the given splits, and the missing ones cut out of train."""
    sizes = {}
    n = len(given["train"])
    for name, setting in (("test", cfg.test_size), ("val", cfg.val_size)):
        if name in given and setting is not None:
            raise ConfigError(f"data.{name}_size: expected none when {path} holds x_{name} "
                              f"(that split is given), got {setting}")
        if name not in given:
            sizes[name] = default_val_size(n) if setting is None else setting
    if sum(sizes.values()) >= n:
        wanted = ", ".join(f"{size} {name}" for name, size in sizes.items())
        raise ConfigError(f"data.{'/'.join(f'{k}_size' for k in sizes)}: expected fewer than "
                          f"the {n} training examples of {path} together, got {wanted}")
    if not sizes:  # nothing to cut: the file's splits, in the file's order
        return given["train"], given["val"], given["test"]
    parts = stratified_split(given["train"], tuple(sizes.values()), SPLIT_SEED)
    splits = {**given, **dict(zip([*sizes, "train"], parts))}  # the cut train replaces train
    return splits["train"], splits["val"], splits["test"]
