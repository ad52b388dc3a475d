"""Shared fixtures: tiny configs that train in well under a second."""

import os

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
