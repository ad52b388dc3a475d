"""The probe set: a fixed, seeded subset of the training split on which line curves,
sharpness and barriers are evaluated, shared by every run that uses the same probe seed."""

from __future__ import annotations

import torch

from sgdwalk.data.types import Split


def probe_subset(train: Split, size: int, seed: int) -> Split:
    """`min(size, len(train))` training examples drawn without replacement, in a fixed order.

    The order is the first entries of `torch.randperm(len(train))` under a private generator
    seeded with `seed`, so it never touches (or depends on) the global RNG or the run seed,
    and each probe batch mixes classes even when the training file is sorted by class.

    Args:
        train: the un-augmented training split, x of shape (N, *input_shape).
        size: number of examples wanted (>= 0); clipped to N.
        seed: seed of the subset (the config's `data.probe_seed`).

    Returns:
        A Split with x of shape (min(size, N), *input_shape) (a copy, not a view).
    """
    if size < 0:
        raise ValueError(f"probe size: expected an integer >= 0, got {size}")
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(train), generator=generator)[: min(size, len(train))]
    return train.take(index)
