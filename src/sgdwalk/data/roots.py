"""Where datasets live on disk when the config does not say."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_root() -> Path:
    """The folder that holds one sub-folder per dataset: $SGDWALK_DATA or ~/.cache/sgdwalk."""
    env = os.environ.get("SGDWALK_DATA", "")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "sgdwalk"


def dataset_root(cfg_root: str | None, name: str) -> Path:
    """`cfg_root` when given (with ~ expanded), else default_data_root() / name."""
    if cfg_root is not None:
        return Path(cfg_root).expanduser()
    return default_data_root() / name
