"""Sweep folders: the manifest `sweep.json` of a study folder and read-only run status.

A sweep folder::

    OUT/<study>/
      sweep.json            the manifest below, rewritten atomically after every run
      <name>-<id>/          one run folder per run (see `sgdwalk.store`)

sweep.json is a JSON object: study, scale, source, overrides, backend, workers, started,
updated, and `runs`, a list in the study's order of {name, run_id, dir, variant, point,
status, steps, seconds, error}; status is pending | running | completed | diverged |
stopped | failed (failed: the run raised; `error` holds the one-line message).
"""

from __future__ import annotations

import json
from pathlib import Path

from sgdwalk.errors import StoreError
from sgdwalk.store.disk import fault, lock_holder, write_text_atomic
from sgdwalk.store.run import CONFIG, META, RunStore

MANIFEST = "sweep.json"


def write_manifest(root, manifest: dict) -> Path:
    """Write `root`/sweep.json atomically (creating `root`); returns its path."""
    root = Path(root)
    where = f"sweep {root}"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fault(exc, where, "create the sweep folder") from None
    try:
        text = json.dumps(manifest, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{where}: expected a JSON-serialisable manifest, got {exc}") from None
    path = root / MANIFEST
    write_text_atomic(path, text, where)
    return path


def read_manifest(root) -> dict | None:
    """The manifest of sweep folder `root`, or None when it has none."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise fault(exc, f"sweep {root}", f"read {MANIFEST}") from None
    except ValueError as exc:
        raise StoreError(f"sweep {root}: {MANIFEST}: expected JSON, got {exc}") from None
    if not isinstance(data, dict):
        raise StoreError(f"sweep {root}: {MANIFEST}: expected an object, got {type(data)}")
    return data


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
