"""The sweep manifest: `sweep.json`, the record a sweep keeps of its runs in a study folder.

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
from sgdwalk.store.artifacts import write_artifact
from sgdwalk.store.disk import fault

MANIFEST = "sweep.json"


def write_manifest(root, manifest: dict) -> Path:
    """Write `root`/sweep.json atomically (creating `root`); returns its path."""
    where = f"sweep {root}"
    try:
        text = json.dumps(manifest, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{where}: expected a JSON-serialisable manifest, got {exc}") from None
    return write_artifact(Path(root) / MANIFEST, text, where)


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
