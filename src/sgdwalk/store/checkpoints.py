"""Checkpoints: RUN_DIR/checkpoints/step-00000100.pt, written atomically, newest `keep` kept.

A checkpoint is a dict saved with `torch.save`. It is read back only with
`torch.load(weights_only=True)`, which rebuilds tensors and plain containers and refuses any
other pickled object without running it; `check_state` refuses such objects at save time,
so a run that cannot be resumed fails when it saves, not hours later when it resumes.
"""

from __future__ import annotations

import collections
import re
import warnings
import zipfile
from pathlib import Path

from sgdwalk.errors import StoreError
from sgdwalk.store.disk import fault, remove_stale_tmp, write_atomic

_NAME = re.compile(r"step-(\d+)\.pt")
_PLAIN = (int, float, bool, complex, str, bytes, type(None))
_CONTAINERS = (dict, collections.OrderedDict, list, tuple, set)


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.pt"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of the finished checkpoints in `folder`, oldest first."""
    try:
        entries = list(folder.iterdir()) if folder.is_dir() else []
    except OSError as exc:
        raise fault(exc, folder, "list checkpoints") from None
    found = [(int(m.group(1)), p) for p in entries if (m := _NAME.fullmatch(p.name))]
    return sorted(found)


def check_state(state, where: str, path: str = "state") -> None:
    """Refuse anything `torch.load(weights_only=True)` would not load back."""
    import torch

    if isinstance(state, torch.Tensor) or type(state) in _PLAIN:
        return
    if type(state) in (torch.Size, torch.dtype, torch.device):
        return
    if type(state) in _CONTAINERS:
        items = state.items() if isinstance(state, dict) else enumerate(state)
        for key, value in items:
            if isinstance(state, dict):
                check_state(key, where, f"{path} key {key!r}")
            check_state(value, where, f"{path}[{key!r}]")
        return
    raise StoreError(
        f"{where}: {path}: expected tensors, numbers, strings and dict/list/tuple of them "
        f"(loadable with torch.load(weights_only=True)), got {type(state).__module__}."
        f"{type(state).__qualname__}"
    )


def check_args(state, keep, where: str) -> None:
    """Refuse a bad `save` call before anything is written."""
    if not isinstance(state, dict):
        raise StoreError(f"{where}: expected a checkpoint state dict, got {type(state).__name__}")
    if type(keep) is not int or keep < 1:
        raise StoreError(f"{where}: expected keep >= 1 checkpoints, got {keep!r}")
    check_state(state, where)


def save(folder: Path, step: int, state: dict, keep: int, where: str) -> Path:
    """Write checkpoints/step-<step>.pt atomically, then delete all but the newest `keep`.
    The caller has run `check_args`."""
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise fault(exc, where, "create the checkpoints folder") from None
    remove_stale_tmp(folder)
    path = folder / checkpoint_name(step)
    write_atomic(path, lambda f: _torch_save(state, f), where)
    for _, old in list_checkpoints(folder)[:-keep]:
        try:
            old.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise fault(exc, where, f"delete the old checkpoint {old.name}") from None
    return path


def _torch_save(state: dict, f) -> None:
    """torch.save into file `f`. torch's zip writer turns an OSError of `f.write` (a full
    disk) into a RuntimeError ("unexpected pos"); the OSError is raised instead, so the
    caller reports the full disk."""
    import torch

    failed: list[OSError] = []

    class Sink:
        def write(self, data):
            try:
                return f.write(data)
            except OSError as exc:
                failed.append(exc)
                raise

        def flush(self):
            f.flush()

    try:
        torch.save(state, Sink())
    except RuntimeError:
        if failed:
            raise failed[0] from None
        raise


def load_latest(folder: Path, where: str, map_location="cpu") -> tuple[int, dict] | None:
    """(step, state) of the newest checkpoint, or None when there is none.

    A newest checkpoint that does not load is an error, not a reason to fall back silently:
    writes are atomic, so a damaged file was damaged outside the store (or planted), and the
    person resuming decides; the message names the file to delete to use the previous one.
    """
    import pickle

    import torch

    found = list_checkpoints(folder)
    if not found:
        return None
    step, path = found[-1]
    previous = f"; delete it to resume from {found[-2][1].name}" if len(found) > 1 else ""
    try:
        with warnings.catch_warnings():  # the StoreError below says all there is to say
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if zipfile.is_zipfile(path):
            got = f"objects weights_only refuses, not loaded ({_reason(exc)})"
        else:
            got = f"a file that is not a torch checkpoint ({_size(path)}), not loaded"
        raise StoreError(
            f"{where}: checkpoint {path.name}: expected tensors and plain containers, got "
            f"{got}{previous}"
        ) from None
    except OSError as exc:
        raise fault(exc, where, f"read checkpoint {path.name}") from None
    except (RuntimeError, EOFError, ValueError) as exc:
        raise StoreError(
            f"{where}: checkpoint {path.name}: expected a torch checkpoint, got an unreadable "
            f"file ({_size(path)}: {_first_line(exc)}){previous}"
        ) from None
    if not isinstance(state, dict):
        raise StoreError(
            f"{where}: checkpoint {path.name}: expected a state dict, got {type(state).__name__}"
        )
    return step, state


def _reason(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        if "Unsupported" in line or "global" in line.lower():
            return line.strip()[:160]
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0][:160] if lines else type(exc).__name__) or type(exc).__name__


def _size(path: Path) -> str:
    try:
        return f"{path.stat().st_size} bytes"
    except OSError:
        return "unreadable"
