"""Run folders seen from outside: finding them under a root, and their state read without
taking the writer lock (meta.json, status, the process writing them now, how far they got).

A folder is a run when it holds config.toml and metrics.sqlite. Folders being made by
`RunStore.create` are filled under a hidden temporary name (`.NAME.tmp-PID`) and renamed
into place whole, so they are never found half-made; `checkpoints/` folders are not searched.
"""

from __future__ import annotations

import os
from pathlib import Path

from sgdwalk.errors import StoreError
from sgdwalk.store.disk import TMP_MARK, lock_holder
from sgdwalk.store.run import CHECKPOINTS, CONFIG, META, METRICS, RunStore


def find_runs(root) -> list[Path]:
    """Run folders (holding config.toml and metrics.sqlite) at or under `root`, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise StoreError(f"find runs: expected an existing folder, got {root}")
    found = []
    for folder, dirs, files in os.walk(root, onerror=None):
        if CONFIG in files and METRICS in files:
            found.append(Path(folder))
        # a run being made (a temporary folder) is not a run yet; checkpoints hold no runs
        dirs[:] = [d for d in dirs if d != CHECKPOINTS
                   and not (d.startswith(".") and TMP_MARK in d)]
    return sorted(found)


def run_meta(run_dir) -> dict:
    """meta.json of a run folder, read without taking the writer lock."""
    with RunStore.open(run_dir) as run:
        return run.meta()


def run_status(run_dir) -> str | None:
    """The status recorded in a run folder's meta.json; None when there is no run there yet
    (or only the start of one: a folder without its config or meta)."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file() or not (run_dir / META).is_file():
        return None
    try:
        return run_meta(run_dir).get("status")
    except StoreError:
        return None  # unreadable: training it again reports the real problem


def run_writer(run_dir) -> str | None:
    """The pid (text) of the process writing the run in `run_dir` now, or None when no
    process holds its writer lock (a finished, stopped or killed run, or no run yet)."""
    return lock_holder(Path(run_dir))


def run_progress(root) -> tuple[tuple[str, str, int, int], ...]:
    """How far every run at or under `root` got, read cheaply (no rows but `loss`): per run
    folder (path, status, newest step of `loss`, rows of `loss`). `loss` is logged at every
    step, so its rows count the steps committed so far. A folder that cannot be read is
    left out (one being written is read again at the next call)."""
    out = []
    for run_dir in find_runs(root):
        try:
            with RunStore.open(run_dir) as run:
                status = str(run.meta().get("status"))
                loss = run.scalars(["loss"], wide=False)
        except StoreError:
            continue
        newest = int(loss["step"].max()) if len(loss) else -1
        out.append((str(run_dir), status, newest, len(loss)))
    return tuple(out)
