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


SMALL_STUDY = """\
# sgdwalk sweep {path} --scale cpu
# A small study for the tests.
[study]
name = "{name}"

[base]
data.name = "digits"
data.probe_size = 64
data.probe_batch = 32
model.widths = [16]
optim.batch_size = 64
train.epochs = {epochs}
train.max_steps = {steps}
train.checkpoint_every = 7
walk.preset = "cheap"

[grid]
train.seed = {seeds}

{variants}

[scale.cpu]
"""


@pytest.fixture
def small_study(tmp_path):
    """small_study(name, seeds, steps, variants, epochs) -> path of a study TOML file: an MLP
    on digits, batch 64 (19 steps per epoch), at most `steps` steps, cheap probes."""

    def make(name="small", seeds=(1, 2), steps=12, variants="", epochs=1):
        path = tmp_path / f"{name}.toml"
        path.write_text(SMALL_STUDY.format(path=path, name=name, steps=steps, epochs=epochs,
                                           seeds=list(seeds), variants=variants))
        return path

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
