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
"""

from __future__ import annotations

import functools

import torch

from sgdwalk.config import DataConfig
from sgdwalk.data.augment import augment_cifar
from sgdwalk.data.prepare import assemble_dataset, standardise
from sgdwalk.data.registry import register_dataset
from sgdwalk.data.split import SPLIT_SEED, stratified_split
from sgdwalk.data.types import Dataset, Split
from sgdwalk.errors import ConfigError

TEST_SIZE = 360  # fixed test rows (20% of 1,797, rounded to a multiple of 10 classes)
VAL_SIZE = 180  # validation rows when data.val_size is None


@register_dataset("digits")
def load_digits(cfg: DataConfig) -> Dataset:
    """Load the bundled digits with the fixed stratified split described in the module."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = torch.as_tensor(bunch.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
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
