"""scikit-learn's bundled 8x8 handwritten digits: the always-available offline dataset.

1,797 images of shape (1, 8, 8) with 17 grey levels (0..16), 10 classes. The split is
stratified and fixed (seed 0, independent of the run seed): 360 test, `data.val_size`
validation (default 180), the rest (1,257 by default) train. Pixels are scaled by 1/16 and
then standardised with the training split's scalar mean and std.

Augmentation (ours, with `data.augment`, the default): a random crop 8 from the image
padded by 1 blank pixel, no flip: the 8x8 analogue of the study's CIFAR-10 crop 32 with
padding 4 (the same 1/8 of the side). Without it the MLP fits the 1,257 training images to
a loss near 0 within a few epochs and the walk's heights sink below the evaluation noise;
with it, as on the study's augmented CIFAR-10, training stays in the regime the study
describes for many epochs.

The images are read from the file scikit-learn ships them in (sklearn/datasets/data/
digits.csv.gz: 64 grey levels and the label per row, in `load_digits` order), found without
importing scikit-learn, whose import (with SciPy) took longer than all of torch's at start-up.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import torch

from sgdwalk.config import DataConfig
from sgdwalk.data.augment import augment_cifar
from sgdwalk.data.prepare import assemble_dataset, standardise
from sgdwalk.data.registry import register_dataset
from sgdwalk.data.split import SPLIT_SEED, stratified_split
from sgdwalk.data.types import Dataset, Split
from sgdwalk.errors import ConfigError

N_IMAGES = 1797
TEST_SIZE = 360  # fixed test rows (20% of 1,797, rounded to a multiple of 10 classes)
VAL_SIZE = 180  # validation rows when data.val_size is None


@register_dataset("digits")
def load_digits(cfg: DataConfig) -> Dataset:
    """Load the bundled digits with the fixed stratified split described in the module."""
    pixels, labels = read_digits()
    x = pixels.to(torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = labels
    v = VAL_SIZE if cfg.val_size is None else cfg.val_size
    if v >= y.shape[0] - TEST_SIZE:
        raise ConfigError(
            f"data.val_size: expected < {y.shape[0] - TEST_SIZE} (digits left after the "
            f"{TEST_SIZE} test images), got {v}"
        )
    test, val, train = stratified_split(Split(x, y), (TEST_SIZE, v), SPLIT_SEED)
    train, val, test = standardise(train, val, test)
    blank = float(train.x.min())  # a 0 pixel after standardisation
    augment = (
        functools.partial(augment_cifar, padding=1, fill=blank, flip=False)
        if cfg.augment
        else None
    )
    return assemble_dataset(cfg, train, val, test, num_classes=10, augment=augment,
                            source="scikit-learn")


def read_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as (pixels (1797, 64) float64 grey levels 0..16, labels (1797,)
    int64), read from its gzipped CSV without importing scikit-learn."""
    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    where = (Path(next(iter(spec.submodule_search_locations)), "datasets", "data",
                  "digits.csv.gz") if spec and spec.submodule_search_locations else None)
    if where is None or not where.is_file():
        raise ConfigError(f"data.name='digits': expected scikit-learn's digits.csv.gz "
                          f"(pip install scikit-learn), got {where or 'no scikit-learn'}")
    with gzip.open(where, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    if table.shape != (N_IMAGES, 65):
        raise ConfigError(f"data.name='digits': expected {N_IMAGES} rows of 64 pixels and a "
                          f"label in {where}, got shape {table.shape}")
    return torch.from_numpy(table[:, :64].copy()), torch.from_numpy(table[:, 64].astype(np.int64))
