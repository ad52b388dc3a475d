"""Splitting a labelled set by class, and the check every loaded dataset passes.

`stratified_split` cuts held-out splits whose class proportions match the whole set's
(digits, the IDX validation split, arrays given only a training set), so a file sorted by
class cannot give a validation split of one class. `check_splits` runs on every dataset,
built-in or imported, after it is loaded: a wrong split is a one-line DataError, never a
run that completes with a test accuracy of 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sgdwalk.data.types import Dataset, Split
from sgdwalk.errors import DataError

SPLIT_SEED = 0  # seed of every fixed split: the split never depends on the run seed
# A class the training split's proportions predict at least this many times in a held-out
# split, yet absent from it: a random split misses it with probability about e^-10 < 1e-4.
MIN_EXPECTED = 10
FINITE_CHUNK = 1 << 22  # elements checked at a time (a bounded temporary, whatever the size)
MAX_CLASSES = 1 << 20  # labels (and token ids) below this: class counts are tensors this long


def stratified_order(y: torch.Tensor, seed: int) -> torch.Tensor:
    """A permutation of range(N) whose every prefix and every run of consecutive entries
    holds the classes in (nearly) their overall proportions.

    Each example gets the key (r + 0.5) / n_c, where n_c is the size of its class and r
    its rank within the class in a seeded random order; sorting by the key interleaves the
    classes evenly. Args: y int64 labels >= 0 (N,). Returns int64 indices (N,).
    """
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(y.shape[0], generator=generator)
    yp = y[perm]
    counts = torch.bincount(yp).to(torch.float64)
    rank = torch.empty_like(yp)
    for c in range(counts.shape[0]):  # a loop over classes, not examples
        members = (yp == c).nonzero().squeeze(1)
        rank[members] = torch.arange(members.shape[0])
    key = (rank.to(torch.float64) + 0.5) / counts[yp]
    return perm[torch.sort(key, stable=True).indices]


def stratified_split(data: Split, sizes: Sequence[int], seed: int = SPLIT_SEED) -> list[Split]:
    """Cut `data` into len(sizes) + 1 splits along `stratified_order(data.y, seed)`: the
    first sizes[0] examples, the next sizes[1], ..., and the rest last.

    Each split holds every class in about its share of `data` (round-off: one example per
    class), and the result depends on `seed` alone, never on the global RNG.

    Example: test, val, train = stratified_split(everything, (360, 180), seed=0)

    Raises:
        ValueError: a negative size, or sizes adding up to more than len(data).
    """
    if any(s < 0 for s in sizes) or sum(sizes) > len(data):
        raise ValueError(f"stratified_split: expected sizes >= 0 adding up to at most "
                         f"{len(data)}, got {list(sizes)}")
    order = stratified_order(data.y, seed)
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)
    bounds.append(len(data))
    return [data.take(order[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def check_splits(dataset: Dataset) -> Dataset:
    """Refuse a dataset whose splits cannot measure what a run reports; return it unchanged.

    Checked (labels in [0, num_classes) and shapes already hold, by `Dataset`):
      - num_classes is at most MAX_CLASSES, and the training split has an example;
      - every input of every split is finite;
      - with one label per example (y of shape (N,)), a non-empty val or test split holds
        every class c that it should hold at least MIN_EXPECTED times by the training
        split's proportions, E_c = n_split * n_c / n_train. A file sorted by class (train
        0-7, val only 8s, test only 9s) fails this; a small split that misses a rare class
        by chance does not. Next-token targets (y of shape (N, T)) are not classes of
        examples: a validation text need not use every character of the training text.

    Raises:
        DataError: one line naming the dataset, the split and what is wrong.
    """
    name = dataset.name
    if dataset.num_classes > MAX_CLASSES:
        raise DataError(f"{name}: expected at most {MAX_CLASSES} classes, got "
                        f"{dataset.num_classes}")
    if not len(dataset.train):
        raise DataError(f"{name} train: expected at least one example, got 0")
    for split_name in ("train", "val", "test", "probe"):
        _check_finite(name, split_name, getattr(dataset, split_name).x)
    if dataset.train.y.ndim != 1:
        return dataset
    counts = torch.bincount(dataset.train.y, minlength=dataset.num_classes)
    share = counts.to(torch.float64) / len(dataset.train)
    for split_name in ("val", "test"):
        split = getattr(dataset, split_name)
        if not len(split):
            continue
        held = torch.bincount(split.y, minlength=dataset.num_classes)
        expected = share * len(split)
        missing = ((held == 0) & (expected >= MIN_EXPECTED)).nonzero().squeeze(1)
        if len(missing):
            raise DataError(
                f"{name} {split_name}: expected every class of the training split, got no "
                f"example of class {', '.join(map(str, missing.tolist()))} (the training "
                f"split's proportions predict at least {float(expected[missing].min()):.0f} "
                f"of each among its {len(split)} examples; is a file sorted by class?)"
            )
    return dataset


def _check_finite(name: str, split_name: str, x: torch.Tensor) -> None:
    rows = max(1, FINITE_CHUNK // max(1, x[0].numel())) if len(x) else 1
    for start in range(0, len(x), rows):
        bad = ~torch.isfinite(x[start : start + rows]).flatten(1).all(dim=1)
        if bad.any():
            row = start + int(bad.nonzero()[0, 0])
            value = x[row].flatten()[~torch.isfinite(x[row].flatten())][0].item()
            raise DataError(f"{name} {split_name}: expected finite inputs, got {value} in "
                            f"example {row}")
