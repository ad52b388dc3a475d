"""Fixtures for the run store tests: a real resolved config and a factory of run folders."""

from __future__ import annotations

import pytest

from sgdwalk.config import RunConfig, config_to_toml, replace
from sgdwalk.store import RunStore


def config_text(**changes) -> str:
    """The TOML of a resolved RunConfig with dotted-key changes, e.g. {"optim.lr": 0.05}."""
    return config_to_toml(replace(RunConfig(), **changes))


@pytest.fixture
def make_run(tmp_path):
    """make_run(folder, meta, **config_changes) -> an open writer RunStore in tmp_path/folder."""
    opened = []

    def make(folder="run", meta=None, **changes):
        store = RunStore.create(
            tmp_path / folder, config_text(**changes), meta or {"status": "running", "seed": 1}
        )
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
