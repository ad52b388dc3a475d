"""A run's identity: its id and folder name from its config, the provenance recorded in its
meta.json, and the run folder a trainer opens by that identity (rank 0 writes it, the other
ranks of a data-parallel run follow it).

    run_id(config) = the first 12 hex digits of SHA-256(JSON of the config, keys sorted,
                     cosmetic fields normalised)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import re
import subprocess
from pathlib import Path

from sgdwalk.config import RunConfig, config_to_toml, replace, to_dict

# Fields that change how a run is shown, not what it computes.
_COSMETIC = {"train.progress": True}


def run_id(config: RunConfig) -> str:
    """12 hex digits of the SHA-256 of the config (cosmetic fields normalised)."""
    canonical = replace(config, **_COSMETIC)
    text = json.dumps(to_dict(canonical), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_dir_name(config: RunConfig) -> str:
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", config.name).strip("-") or "run"
    return f"{label}-{run_id(config)}"


def environment() -> dict:
    """Versions and machine facts recorded in every run's meta."""
    import numpy
    import torch

    import sgdwalk

    return {
        "sgdwalk": sgdwalk.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "git_revision": git_revision(),
    }


def git_revision() -> str | None:
    """The commit of the sgdwalk source checkout, if it is one."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def create_run(config: RunConfig, out: str | Path):
    """Open the run directory for `config` under `out`, creating it if new."""
    from sgdwalk.store import RunStore

    path = Path(out) / run_dir_name(config)
    if (path / "meta.json").exists():
        # exist_ok reopens it: the same config is required and meta is kept (a folder left
        # without metric tables by a kill, before runs were made whole, gets them)
        return RunStore.create(path, config_to_toml(config), {}, exist_ok=True)
    meta = {"run_id": run_id(config), "name": config.name, "seed": config.train.seed,
            "device": config.train.device, "status": "created", "started": now(),
            **environment()}
    return RunStore.create(path, config_to_toml(config), meta, exist_ok=True)


def open_run(run_dir: str | Path):
    from sgdwalk.store import RunStore

    return RunStore.open(run_dir, write=True)


def finish_meta(store, status: str, steps: int, final: dict) -> None:
    store.update_meta(status=status, steps_done=steps, final=final, ended=now())


class FollowerStore:
    """What a non-zero rank of a data-parallel run sees of the run: it reads the run's
    meta and checkpoints, and its writes go nowhere (rank 0 writes them)."""

    def __init__(self, path: str | Path):
        from sgdwalk.store import RunStore

        self.path = Path(path)
        self._reader = RunStore.open(self.path)

    def meta(self) -> dict:
        return self._reader.meta()

    def config_text(self) -> str:
        return self._reader.config_text()

    def latest_checkpoint(self):
        return self._reader.latest_checkpoint()

    def log(self, step, values) -> None:
        pass

    def flush(self) -> None:
        pass

    def discard(self) -> None:
        pass

    def update_meta(self, **fields) -> dict:
        return {}

    def save_checkpoint(self, step, state, keep=2) -> None:
        pass

    def close(self) -> None:
        self._reader.close()

    def abandon(self) -> None:
        self._reader.close()
