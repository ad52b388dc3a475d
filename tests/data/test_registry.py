"""The registry, the Split and Dataset containers, and the default data folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sgdwalk.config import DataConfig
from sgdwalk.data import DATASETS, Dataset, Split, default_data_root, load_dataset, register_dataset
from sgdwalk.errors import ConfigError, DataError


def test_registry_holds_the_seven_datasets():
    assert sorted(DATASETS) == [
        "arrays", "cifar10", "digits", "fashion_mnist", "mnist", "synthetic", "text"
    ]


def test_unknown_name_is_a_config_error_listing_the_choices():
    with pytest.raises(ConfigError) as info:
        load_dataset(DataConfig(name="imagenet"))
    assert str(info.value) == (
        "data.name: expected one of arrays, cifar10, digits, fashion_mnist, mnist, synthetic, "
        "text or an import path module:factory, got 'imagenet'"
    )


def test_register_dataset_adds_a_loader_and_refuses_duplicates(monkeypatch):
    monkeypatch.setattr("sgdwalk.data.registry.DATASETS", dict(DATASETS))
    from sgdwalk.data import registry

    loaded = []

    @registry.register_dataset("tiny")
    def tiny(cfg):
        loaded.append(make(split(), name=cfg.name))
        return loaded[-1]

    assert registry.load_dataset(DataConfig(name="tiny")) is loaded[0]
    assert loaded[0].name == "tiny"
    with pytest.raises(ValueError, match="'digits' is already registered"):
        register_dataset("digits")(tiny)


def split(n=4, shape=(2,), labels=None):
    y = torch.zeros(n, dtype=torch.int64) if labels is None else labels
    return Split(torch.zeros(n, *shape), y)


def test_split_len_and_validation():
    assert len(split(5)) == 5
    with pytest.raises(DataError, match="expected dtype float32, got torch.float64"):
        Split(torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(DataError, match="expected dtype int64, got torch.int32"):
        Split(torch.zeros(3, 2), torch.zeros(3, dtype=torch.int32))
    with pytest.raises(DataError, match="got \\(3, 2\\) and \\(4,\\)"):
        Split(torch.zeros(3, 2), torch.zeros(4, dtype=torch.int64))


def make(train, num_classes=2, input_shape=(2,), name="toy"):
    return Dataset(name, train, split(0), split(), split(), num_classes, input_shape, None, "x")


def test_dataset_checks_shapes_and_labels():
    assert make(split()).input_shape == (2,)
    with pytest.raises(
        DataError, match="toy train: expected examples of shape \\(3,\\), got \\(2,\\)"
    ):
        make(split(), input_shape=(3,))
    with pytest.raises(DataError, match="expected labels in \\[0, 2\\), got \\[0, 2\\]"):
        make(split(labels=torch.tensor([0, 1, 2, 0])))


def test_default_data_root(monkeypatch):
    monkeypatch.setenv("SGDWALK_DATA", "~/somewhere")
    assert default_data_root() == Path.home() / "somewhere"
    monkeypatch.delenv("SGDWALK_DATA")
    assert default_data_root() == Path.home() / ".cache" / "sgdwalk"
