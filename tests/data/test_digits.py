"""digits: scikit-learn's bundled 8x8 digits with a fixed stratified split."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from sklearn.datasets import load_digits

from sgdwalk.config import DataConfig
from sgdwalk.data import load_dataset
from sgdwalk.data.digits import read_digits
from sgdwalk.errors import ConfigError


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig(name="digits"))


def grey_levels(ds):
    """Invert x = (level / 16 - m) / s for every split. The training split holds both level 0
    and level 16, so its min and max give m and s: level = 16 (x - min) / (max - min)."""
    lo, hi = ds.train.x.double().min(), ds.train.x.double().max()
    return {
        name: (16 * (getattr(ds, name).x.double() - lo) / (hi - lo)).reshape(-1, 64)
        for name in ("train", "val", "test")
    }


def levels_of(ds, name):
    return grey_levels(ds)[name].round()


def test_read_digits_is_sklearns_load_digits_exactly():
    pixels, labels = read_digits()
    sk = load_digits()
    assert torch.equal(pixels, torch.from_numpy(sk.data))
    assert torch.equal(labels, torch.from_numpy(sk.target).long())


def test_sizes_shape_and_metadata(digits):
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1257, 180, 360)
    assert len(digits.probe) == 512 and digits.input_shape == (1, 8, 8)
    assert digits.num_classes == 10 and digits.augment is not None
    assert digits.source == "scikit-learn"
    assert digits.train.x.dtype == torch.float32 and digits.train.y.dtype == torch.int64


def test_standardised_with_the_training_split_statistics(digits):
    x = digits.train.x.double()
    assert abs(float(x.mean())) < 1e-6 and abs(float(x.std(unbiased=False)) - 1) < 1e-5
    levels = grey_levels(digits)
    for name, values in levels.items():  # all splits share the train map: whole levels 0..16
        assert torch.allclose(values, values.round(), atol=1e-4), name
        assert float(values.min()) > -1e-4 and float(values.max()) < 16 + 1e-4
    # and that map is the train split's own mean and std of level / 16
    train = levels["train"].round() / 16
    m, s = train.mean(), train.std(unbiased=False)
    lo = float(digits.train.x.double().min())
    assert abs(lo - float(-m / s)) < 1e-5


def test_splits_partition_the_1797_images(digits):
    sk = load_digits()
    levels = grey_levels(digits)
    ours = Counter()
    for name in ("train", "val", "test"):
        for row, label in zip(levels[name].round().long(), getattr(digits, name).y):
            ours[(tuple(row.tolist()), int(label))] += 1
    theirs = Counter((tuple(int(v) for v in row), int(t)) for row, t in zip(sk.data, sk.target))
    assert ours == theirs


def test_split_is_stratified(digits):
    counts = torch.bincount(torch.from_numpy(load_digits().target)).double()
    for name, size in (("test", 360), ("val", 180), ("train", 1257)):
        got = torch.bincount(getattr(digits, name).y, minlength=10).double()
        assert (got - counts * size / 1797).abs().max() <= 1.0, name


def test_split_ignores_the_global_seed_and_test_ignores_val_size(digits):
    torch.manual_seed(12345)
    again = load_dataset(DataConfig(name="digits"))
    assert torch.equal(again.train.x, digits.train.x) and torch.equal(again.test.y, digits.test.y)
    other = load_dataset(DataConfig(name="digits", val_size=100))
    assert (len(other.train), len(other.val), len(other.test)) == (1337, 100, 360)
    assert torch.equal(levels_of(other, "test"), levels_of(digits, "test"))


def test_val_size_zero_and_train_size(digits):
    no_val = load_dataset(DataConfig(name="digits", val_size=0))
    assert (len(no_val.train), len(no_val.val)) == (1437, 0)
    small = load_dataset(DataConfig(name="digits", train_size=100))
    assert torch.equal(small.train.x, digits.train.x[:100])
    assert len(small.probe) == 100


def test_val_size_that_leaves_no_training_data_is_a_config_error():
    with pytest.raises(ConfigError, match="data.val_size: expected < 1437"):
        load_dataset(DataConfig(name="digits", val_size=1437))


def test_augmentation_shifts_by_at_most_one_pixel_and_never_mirrors(digits):
    """The crop-8-pad-1 analogue of CIFAR's crop: every augmented image equals the original
    shifted by (di, dj) in {-1, 0, 1}^2 with blank pixels shifted in."""
    x = digits.train.x[:200]
    out = digits.augment(x, torch.Generator().manual_seed(0))
    blank = float(digits.train.x.min())
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), value=blank)
    shifts = set()
    for b in range(x.shape[0]):
        matches = [(i, j) for i in range(3) for j in range(3)
                   if torch.equal(out[b], padded[b, :, i:i + 8, j:j + 8])]
        assert matches, f"image {b} is not a shifted copy"
        shifts.add(matches[0])
    assert len(shifts) >= 7  # the offsets really vary


def test_no_augmentation_when_switched_off():
    from sgdwalk.config import DataConfig
    from sgdwalk.data import load_dataset

    assert load_dataset(DataConfig(augment=False)).augment is None
