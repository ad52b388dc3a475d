"""stratified_split and check_splits: held-out splits hold every class in its share, and a
dataset whose splits miss classes (a file sorted by class) is one line, never a run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgdwalk.config import DataConfig
from sgdwalk.data import (
    SPLIT_SEED,
    Dataset,
    Split,
    check_splits,
    load_dataset,
    stratified_order,
    stratified_split,
)
from sgdwalk.errors import DataError


def labelled(counts: list[int]) -> Split:
    """Examples sorted by class, counts[c] of class c; row k's input is k (traceable)."""
    y = torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(counts)])
    return Split(torch.arange(len(y), dtype=torch.float32)[:, None], y)


def test_stratified_split_cuts_consecutive_runs_of_the_stratified_order():
    data = labelled([50, 30, 20])
    test, val, train = stratified_split(data, (20, 10), seed=3)
    order = stratified_order(data.y, 3)
    rows = [s.x[:, 0].long() for s in (test, val, train)]
    assert torch.equal(torch.cat(rows), order)  # the order, cut 20 | 10 | the rest
    assert [len(s) for s in (test, val, train)] == [20, 10, 70]
    for part in (test, val, train):  # each class within one example of its share
        share = torch.tensor([0.5, 0.3, 0.2]) * len(part)
        assert (torch.bincount(part.y, minlength=3) - share).abs().max() <= 1
        assert torch.equal(part.y, data.y[part.x[:, 0].long()])  # rows keep their labels


def test_stratified_split_depends_on_its_seed_alone():
    data = labelled([40, 40])
    torch.manual_seed(1)
    a = stratified_split(data, (10,), seed=5)
    torch.manual_seed(2)
    state = torch.get_rng_state()
    b = stratified_split(data, (10,), seed=5)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG was not consumed
    assert all(torch.equal(p.x, q.x) for p, q in zip(a, b))
    assert not torch.equal(stratified_split(data, (10,), seed=6)[0].x, a[0].x)


@pytest.mark.parametrize("sizes", [(-1,), (60, 41)])
def test_stratified_split_refuses_sizes_it_cannot_cut(sizes):
    with pytest.raises(ValueError, match="expected sizes >= 0 adding up to at most 100"):
        stratified_split(labelled([50, 50]), sizes)


def dataset(train: Split, val: Split, test: Split, num_classes: int = 10) -> Dataset:
    return Dataset("toy", train, val, test, train.take(slice(0, 4)), num_classes,
                   tuple(train.x.shape[1:]), None, "memory")


def test_a_file_sorted_by_class_is_one_line():
    """The reported case: train = classes 0-7, val = only 8s, test = only 9s."""
    data = labelled([100] * 10)
    train, val, test = data.take(slice(0, 800)), data.take(slice(800, 900)), data.take(
        slice(900, 1000))
    with pytest.raises(DataError) as info:
        check_splits(dataset(train, val, test))
    assert str(info.value) == (
        "toy val: expected every class of the training split, got no example of class 0, 1, "
        "2, 3, 4, 5, 6, 7 (the training split's proportions predict at least 12 of each "
        "among its 100 examples; is a file sorted by class?)")


def test_a_test_split_missing_a_class_is_one_line():
    everything = labelled([100] * 10)
    test, train = stratified_split(everything, (200,))
    test = test.take(test.y != 3)
    with pytest.raises(DataError, match="toy test: expected every class of the training split, "
                                        "got no example of class 3 \\(.* at least 18 of each"):
        check_splits(dataset(train, Split(torch.zeros(0, 1), torch.zeros(0).long()), test))


def test_a_small_split_may_miss_a_class_by_chance():
    """E_c = 9 examples of class 0 expected: absent by chance with probability e^-9, not
    evidence enough; one more expected example is."""
    train = labelled([100] * 10)
    for n, refused in ((90, False), (100, True)):
        held = train.take(train.y != 0)
        held = held.take(torch.arange(n))
        ds = dataset(train, held, held)
        if refused:
            with pytest.raises(DataError, match="got no example of class 0"):
                check_splits(ds)
        else:
            assert check_splits(ds) is ds


def test_a_valid_dataset_is_returned_unchanged_and_empty_splits_pass():
    train = labelled([5, 5])
    empty = Split(torch.zeros(0, 1), torch.zeros(0, dtype=torch.int64))
    ds = dataset(train, empty, empty, num_classes=2)
    assert check_splits(ds) is ds


@pytest.mark.parametrize("split_name", ["train", "val", "test"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_inputs_are_one_line(split_name, value):
    splits = {name: labelled([30] * 10) for name in ("train", "val", "test")}
    x = splits[split_name].x.clone()
    x[17, 0] = value
    splits[split_name] = Split(x, splits[split_name].y)
    with pytest.raises(DataError, match=f"toy {split_name}: expected finite inputs, got "
                                        f"{value} in example 17"):
        check_splits(dataset(**splits))


def test_an_empty_training_split_is_one_line():
    empty = Split(torch.zeros(0, 1), torch.zeros(0, dtype=torch.int64))
    probe_ok = Dataset("toy", empty, empty, empty, empty, 2, (1,), None, "memory")
    with pytest.raises(DataError, match="toy train: expected at least one example, got 0"):
        check_splits(probe_ok)


def test_every_built_in_dataset_passes_and_digits_keeps_its_fixed_split():
    ds = load_dataset(DataConfig(name="digits"))
    assert check_splits(ds) is ds and SPLIT_SEED == 0
    for split in (ds.val, ds.test):
        assert torch.bincount(split.y, minlength=10).min() >= len(split) // 10 - 1
    synthetic = load_dataset(DataConfig(name="synthetic"))
    assert check_splits(synthetic) is synthetic


def test_a_class_sorted_idx_file_gives_every_split_every_class(formats, tmp_path):
    """The training file sorted by class: its tail (the first version's validation split)
    held only 9s; the stratified split holds 2 of each class in 20."""
    arrays = formats.mnist_arrays(200, 50)
    arrays["train-labels-idx1-ubyte"] = np.sort(arrays["train-labels-idx1-ubyte"])
    folder = formats.write_mnist(tmp_path / "m", arrays, gz=False)
    ds = load_dataset(DataConfig(name="mnist", root=str(folder)))
    assert torch.bincount(ds.val.y, minlength=10).tolist() == [2] * 10
    assert torch.bincount(ds.train.y, minlength=10).tolist() == [18] * 10
    assert torch.bincount(ds.train.y[:50], minlength=10).min() >= 4  # a prefix mixes too


def test_an_idx_test_file_of_one_class_is_one_line(formats, tmp_path):
    """Train of classes 0-8 and a test file of only 9s: the first version trained and
    reported test_acc 0 with no warning."""
    arrays = formats.mnist_arrays(180, 100)
    arrays["train-labels-idx1-ubyte"] = (np.arange(180) % 9).astype(np.uint8)
    arrays["t10k-labels-idx1-ubyte"] = np.full(100, 9, np.uint8)
    folder = formats.write_mnist(tmp_path / "m", arrays, gz=True)
    with pytest.raises(DataError) as info:
        load_dataset(DataConfig(name="mnist", root=str(folder)))
    assert str(info.value) == (
        "mnist test: expected every class of the training split, got no example of class 0, "
        "1, 2, 3, 4, 5, 6, 7, 8 (the training split's proportions predict at least 11 of each "
        "among its 100 examples; is a file sorted by class?)")


def test_next_token_targets_need_not_cover_every_token_of_the_training_text():
    """A validation text may not use every character of the training text: (N, T) targets
    are not one class per example, so only their range is checked (by Dataset)."""
    train_ids = torch.arange(400).reshape(100, 4) % 20
    val_ids = torch.zeros(50, 4, dtype=torch.int64)  # one token only
    train, val = Split(train_ids, (train_ids + 1) % 20), Split(val_ids, val_ids)
    ds = Dataset("text", train, val, val.take(slice(0, 0)), train.take(slice(0, 8)), 20, (4,),
                 None, "memory")
    assert check_splits(ds) is ds


def test_a_class_count_past_the_bound_is_one_line():
    """A factory's num_classes sizes the class counts: 10^12 would allocate terabytes."""
    train = labelled([5, 5])
    ds = dataset(train, train, train, num_classes=10**12)
    with pytest.raises(DataError, match="toy: expected at most 1048576 classes, got "
                                        "1000000000000"):
        check_splits(ds)
