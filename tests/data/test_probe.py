"""probe_subset: a fixed, seeded subset of the training split, independent of the run seed."""

from __future__ import annotations

import pytest
import torch

from sgdwalk.config import DataConfig
from sgdwalk.data import Split, load_dataset, probe_subset


def numbered(n=100):
    """Row k has every input value and the label derived from k, so rows are traceable."""
    x = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 4)
    return Split(x, torch.arange(n) % 3)


def test_same_seed_same_subset_whatever_the_global_seed():
    train = numbered()
    torch.manual_seed(1)
    a = probe_subset(train, 30, seed=5)
    torch.manual_seed(2)
    state = torch.get_rng_state()
    b = probe_subset(train, 30, seed=5)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG was not consumed


def test_subset_is_distinct_training_rows_in_a_seeded_order():
    train = numbered()
    probe = probe_subset(train, 30, seed=5)
    rows = probe.x[:, 0].long()
    assert len(set(rows.tolist())) == 30
    assert torch.equal(probe.y, rows % 3)
    expected = torch.randperm(100, generator=torch.Generator().manual_seed(5))[:30]
    assert torch.equal(rows, expected)
    other = probe_subset(train, 30, seed=6)
    assert not torch.equal(other.x, probe.x)


@pytest.mark.parametrize("size, expected", [(0, 0), (100, 100), (1000, 100)])
def test_size_is_clipped_to_the_split(size, expected):
    assert len(probe_subset(numbered(), size, seed=0)) == expected


def test_negative_size_is_refused():
    with pytest.raises(ValueError, match="expected an integer >= 0, got -1"):
        probe_subset(numbered(), -1, seed=0)


def test_loaders_attach_the_probe_of_the_final_training_split():
    cfg = DataConfig(name="digits", probe_size=64, probe_seed=3, train_size=500)
    torch.manual_seed(0)
    ds = load_dataset(cfg)
    ref = probe_subset(ds.train, 64, 3)
    assert torch.equal(ds.probe.x, ref.x) and torch.equal(ds.probe.y, ref.y)
    torch.manual_seed(99)  # another run seed: the same probe set
    assert torch.equal(load_dataset(cfg).probe.x, ds.probe.x)
