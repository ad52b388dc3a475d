"""Fixtures for the study tests: tiny overrides per study, small study files, and dataset
files in the official formats (CIFAR-10 binary batches, MNIST IDX) for the paper presets."""

from __future__ import annotations

import pytest

# Shrinks every study to a few runs of a few steps: a --set on a grid key collapses that
# axis to one value; train.max_steps caps SGD and GD variants alike.
TINY = ["train.max_steps=6", "data.probe_size=64", "data.probe_batch=32"]
SHRINK = {
    "trajectory": ["train.seed=1"],
    "lr-batch": ["optim.lr=0.2", "grid.optim.batch_size=[16, 64]", "train.seed=1"],
    "barriers": ["train.seed=1"],
    "flatness": ["optim.lr=0.1"],
    "noise": ["train.seed=1"],
    "alignment": ["train.seed=1", "grid.optim.batch_size=[16, 256]"],
}


@pytest.fixture
def tiny():
    """tiny(study, *extra) -> the --set overrides that shrink a shipped study."""

    def make(study: str, *extra: str) -> list[str]:
        return [*TINY, *SHRINK[study], *extra]

    return make


@pytest.fixture
def one_thread():
    """torch on one thread for the test: conv layers on two threads of a busy 2-core machine
    can run ten times slower (threads waiting on each other)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
