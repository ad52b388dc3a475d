"""Fixtures for the study tests: tiny overrides per study, small study files, and dataset
files in the official formats (CIFAR-10 binary batches, MNIST IDX) for the paper presets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


# ---------------------------------------------------------------------------------------
# dataset files in the official formats (same encodings as tests/data/conftest.py)

CIFAR_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)


def write_cifar(folder: Path, per_file: int) -> Path:
    """cifar-10-batches-bin/ with the six binary batch files of `per_file` random records."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(CIFAR_FILES):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 10, per_file, dtype=np.uint8)
        pixels = rng.integers(0, 256, (per_file, 3 * 32 * 32), dtype=np.uint8)
        (folder / name).write_bytes(np.concatenate([labels[:, None], pixels], axis=1).tobytes())
    return folder


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic, big-endian uint32 sizes, the bytes."""
    header = bytes([0, 0, 0x08, array.ndim])
    return header + np.asarray(array.shape, dtype=">u4").tobytes() + array.tobytes()


def write_mnist(folder: Path, n_train: int, n_test: int) -> Path:
    """The four raw MNIST IDX files with random images and cycling labels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    return folder


@pytest.fixture
def one_thread():
    """torch on one thread for the test: conv layers on two threads of a busy 2-core machine
    can run ten times slower (threads waiting on each other)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def paper_data(tmp_path_factory):
    """{"cifar10": folder, "mnist": folder} of fixture-sized files in the official formats."""
    root = tmp_path_factory.mktemp("paper-data")
    return {"cifar10": write_cifar(root / "cifar-10-batches-bin", per_file=24),
            "mnist": write_mnist(root / "mnist", n_train=120, n_test=40)}
