"""Shared fixtures: tiny configs that train in well under a second."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings

from sgdwalk.config import load_config

# The machines are noisy: a busy neighbour can make one example 3x slower.
settings.register_profile("sgdwalk", deadline=None, print_blob=True)
settings.load_profile("sgdwalk")

# One intra-op thread: on a shared 2-core machine, torch's two threads contend with
# pytest itself and make tiny ops 10-100x slower. Subprocesses started by the tests get
# OMP_NUM_THREADS=1 too, so their floats equal the in-process reference runs'.
torch.set_num_threads(1)
os.environ["OMP_NUM_THREADS"] = "1"


def tiny_overrides(**extra):
    base = {
        "data.name": "digits",
        "data.probe_size": 64,
        "data.probe_batch": 32,
        "model.widths": "[16]",
        "optim.batch_size": 64,
        "optim.lr": 0.1,
        "train.epochs": 2,
        "train.progress": "false",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


@pytest.fixture
def tiny_config():
    """A factory: tiny_config(**{"optim.lr": 0.05}) -> RunConfig."""

    def make(**extra):
        return load_config(None, tiny_overrides(**extra))

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


@pytest.fixture(scope="session")
def paper_data(tmp_path_factory):
    """{"cifar10": folder, "mnist": folder} of fixture-sized files in the official formats."""
    root = tmp_path_factory.mktemp("paper-data")
    return {"cifar10": write_cifar(root / "cifar-10-batches-bin", per_file=24),
            "mnist": write_mnist(root / "mnist", n_train=120, n_test=40)}
