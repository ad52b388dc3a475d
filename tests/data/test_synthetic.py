"""synthetic: a deterministic Gaussian mixture of any shape."""

from __future__ import annotations

import pytest
import torch

from sgdwalk.config import DataConfig
from sgdwalk.data import load_dataset
from sgdwalk.errors import ConfigError


def test_deterministic_and_independent_of_the_global_rng():
    torch.manual_seed(0)
    a = load_dataset(DataConfig(name="synthetic"))
    torch.manual_seed(1)
    state = torch.get_rng_state()
    b = load_dataset(DataConfig(name="synthetic"))
    assert torch.equal(torch.get_rng_state(), state)
    for split in ("train", "val", "test", "probe"):
        assert torch.equal(getattr(a, split).x, getattr(b, split).x)
        assert torch.equal(getattr(a, split).y, getattr(b, split).y)


def test_sizes_shape_and_balanced_labels():
    ds = load_dataset(DataConfig(name="synthetic"))  # n 2048, shape (32,), 4 classes
    assert (len(ds.train), len(ds.val), len(ds.test), len(ds.probe)) == (1434, 307, 307, 512)
    assert ds.input_shape == (32,) and ds.num_classes == 4 and ds.source == "generated"
    y = torch.cat([ds.train.y, ds.val.y, ds.test.y])
    assert torch.bincount(y).tolist() == [512] * 4


def test_cifar_shaped_and_custom_val_size():
    cfg = DataConfig(
        name="synthetic",
        synthetic_n=103,
        synthetic_shape=(3, 32, 32),
        synthetic_classes=10,
        val_size=0,
    )
    ds = load_dataset(cfg)
    assert ds.input_shape == (3, 32, 32) and tuple(ds.train.x.shape) == (88, 3, 32, 32)
    assert (len(ds.val), len(ds.test)) == (0, 15)
    assert (
        sorted(torch.bincount(torch.cat([ds.train.y, ds.test.y])).tolist()) == [10] * 7 + [11] * 3
    )


def test_without_noise_every_example_is_its_unit_norm_class_mean():
    ds = load_dataset(DataConfig(name="synthetic", synthetic_noise=0.0))
    x, y = ds.train.x, ds.train.y
    torch.testing.assert_close(x.norm(dim=1), torch.ones(len(y)), atol=1e-6, rtol=0)
    for c in range(4):
        rows = x[y == c]
        assert torch.equal(rows, rows[:1].expand_as(rows))


def test_noise_sets_the_spread_and_the_task_is_learnable_not_trivial():
    ds = load_dataset(DataConfig(name="synthetic"))
    means = torch.stack([ds.train.x[ds.train.y == c].mean(0) for c in range(4)])
    resid = ds.train.x - means[ds.train.y]
    assert abs(float(resid.std()) - 0.5) < 0.01  # synthetic_noise
    nearest = torch.cdist(ds.test.x, means).argmin(1)
    accuracy = float((nearest == ds.test.y).float().mean())
    assert 0.6 < accuracy < 1.0, accuracy


def test_too_small_for_a_training_split_is_a_config_error():
    with pytest.raises(ConfigError, match="data.synthetic_n: expected room for train"):
        load_dataset(DataConfig(name="synthetic", synthetic_n=10, val_size=9))
