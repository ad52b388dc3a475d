"""Checkpoints: RUN_DIR/checkpoints/step-00000100.pt, written atomically, newest `keep` kept.

A checkpoint is a dict saved with `torch.save`. It is read back only with
`torch.load(weights_only=True)`, which rebuilds tensors and plain containers and refuses any
other pickled object without running it; `check_state` refuses such objects at save time,
so a run that cannot be resumed fails when it saves, not hours later when it resumes.

Integrity: the SHA-256 of every checkpoint's bytes is written beside it, as
`step-00000100.pt.sha256` in `sha256sum` format (`sha256sum -c` checks it), atomically and
before the checkpoint itself is renamed into place. Loading checks it before a byte is
unpickled: a checkpoint whose bytes do not match (a flipped bit, a truncation, a file
planted without its sum) is passed over for the previous one with a warning, and when no
checkpoint matches the load is refused.

Identity: every checkpoint holds `run = {"run_id": ..., "config": <config.toml text>}`; a
checkpoint of another run (copied in) is refused. A `checkpoints` entry that is a symbolic
link (a folder shared between runs) is refused: neither loading nor rotation follows it.
"""

from __future__ import annotations

import collections
import hashlib
import io
import re
import warnings
import zipfile
from pathlib import Path

from sgdwalk.errors import SgdwalkWarning, StoreError
from sgdwalk.store.disk import fault, remove_stale_tmp, write_atomic, write_text_atomic

_NAME = re.compile(r"step-(\d+)\.pt")
_SUM = re.compile(r"([0-9a-f]{64})  (\S+)\n")
SUM_SUFFIX = ".sha256"
IDENTITY = "run"  # the key of the run's identity inside a saved state
_PLAIN = (int, float, bool, complex, str, bytes, type(None))
_CONTAINERS = (dict, collections.OrderedDict, list, tuple, set)


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.pt"


def sum_path(path: Path) -> Path:
    """The checksum file of checkpoint `path`."""
    return path.with_name(path.name + SUM_SUFFIX)


def check_folder(folder: Path, where: str) -> None:
    """Refuse a `checkpoints` entry that is not the run's own folder (a symbolic link to a
    folder another run writes too: its rotation would delete that run's checkpoints)."""
    if folder.is_symlink():
        try:
            target = str(folder.readlink())
        except OSError:
            target = "?"
        raise StoreError(
            f"{where}: {folder.name}: expected the run's own checkpoints folder, got a symbolic "
            f"link to {target!r} (a run never reads or rotates checkpoints outside its folder; "
            "replace the link with a folder)"
        )
    if folder.exists() and not folder.is_dir():
        raise StoreError(f"{where}: {folder.name}: expected a folder, got a file")


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
    """Write checkpoints/step-<step>.pt and its checksum atomically (the checksum first),
    then delete all but the newest `keep` with their checksums (and checksum files whose
    checkpoint is gone: a refused file deleted by hand). The caller has run `check_args`."""
    check_folder(folder, where)
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise fault(exc, where, "create the checkpoints folder") from None
    remove_stale_tmp(folder)
    path = folder / checkpoint_name(step)

    def write(f) -> None:
        digest = _torch_save(state, f)
        write_text_atomic(sum_path(path), f"{digest}  {path.name}\n", where)

    write_atomic(path, write, where)
    kept = list_checkpoints(folder)
    orphans = [p for p in folder.glob(f"step-*.pt{SUM_SUFFIX}")
               if not p.with_name(p.name[:-len(SUM_SUFFIX)]).exists()]
    for file in [f for _, old in kept[:-keep] for f in (old, sum_path(old))] + orphans:
        try:
            file.unlink()  # never follows a link: a link is removed, not its target
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise fault(exc, where, f"delete the old checkpoint {file.name}") from None
    return path


def _torch_save(state: dict, f) -> str:
    """torch.save into file `f`; the SHA-256 (hex) of the bytes written. torch's zip writer
    turns an OSError of `f.write` (a full disk) into a RuntimeError ("unexpected pos"); the
    OSError is raised instead, so the caller reports the full disk."""
    import torch

    failed: list[OSError] = []
    digest = hashlib.sha256()

    class Sink:
        def write(self, data):
            try:
                written = f.write(data)
            except OSError as exc:
                failed.append(exc)
                raise
            digest.update(data)
            return written

        def flush(self):
            f.flush()

    try:
        torch.save(state, Sink())
    except RuntimeError:
        if failed:
            raise failed[0] from None
        raise
    return digest.hexdigest()


def checksum_problem(path: Path) -> str | None:
    """None when `path` is a regular file whose SHA-256 matches its checksum file, else
    what is wrong, as "expected X, got Y"."""
    return _verified(path)[1]


def _verified(path: Path) -> tuple[bytes | None, str | None]:
    """(the bytes of `path`, None) when they match its checksum file, else (None, what is
    wrong). The bytes checked are the bytes then loaded: the file is read once."""
    if path.is_symlink():
        return None, "expected a regular file, got a symbolic link"
    sums = sum_path(path)
    try:
        text = sums.read_text(encoding="ascii")
    except FileNotFoundError:
        return None, f"expected its checksum file {sums.name}, got none"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"expected a readable checksum file {sums.name}, got {type(exc).__name__}"
    m = _SUM.fullmatch(text)
    if m is None or m.group(2) != path.name:
        return None, f"expected '<64 hex digits>  {path.name}' in {sums.name}, got {text[:100]!r}"
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"expected a readable file, got {type(exc).__name__}: {exc.strerror}"
    digest = hashlib.sha256(data).hexdigest()
    if digest != m.group(1):
        return None, (f"expected sha256 {m.group(1)} ({sums.name}), got {digest} "
                      "(the file changed after it was written)")
    return data, None


def load_latest(folder: Path, where: str, run_id: str, map_location="cpu"
                ) -> tuple[int, dict] | None:
    """(step, state) of the newest checkpoint whose bytes match their checksum, or None when
    the run has no checkpoint; `state` without its identity.

    A checkpoint whose checksum fails is passed over with a warning (SgdwalkWarning) for
    the previous one; none that passes is an error. A checkpoint that passes but does not
    load (a file planted with a matching sum), or that belongs to another run than
    `run_id`, is an error, not a reason to fall back: the person resuming decides, and the
    message names the file to delete to use the previous one.
    """
    import pickle

    import torch

    check_folder(folder, where)
    found = list_checkpoints(folder)
    if not found:
        return None
    while found:
        step, path = found[-1]
        data, problem = _verified(path)
        if problem is None:
            break
        found.pop()
        then = (f"resuming from {found[-1][1].name} instead" if found else
                "no earlier checkpoint")
        warnings.warn(SgdwalkWarning(
            f"{where}: checkpoint {path.name}: {problem}; not loaded, {then}"), stacklevel=2)
    else:
        raise StoreError(
            f"{where}: expected a checkpoint whose bytes match its checksum, got none that "
            "does (each was damaged or lacks its .sha256 file; see the warnings above); "
            "the run cannot resume"
        )
    previous = f"; delete it to resume from {found[-2][1].name}" if len(found) > 1 else ""
    try:
        with warnings.catch_warnings():  # the StoreError below says all there is to say
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(io.BytesIO(data), map_location=map_location,
                               weights_only=True)
    except pickle.UnpicklingError as exc:
        if zipfile.is_zipfile(io.BytesIO(data)):
            got = f"objects weights_only refuses, not loaded ({_reason(exc)})"
        else:
            got = f"a file that is not a torch checkpoint ({len(data)} bytes), not loaded"
        raise StoreError(
            f"{where}: checkpoint {path.name}: expected tensors and plain containers, got "
            f"{got}{previous}"
        ) from None
    except (RuntimeError, EOFError, ValueError) as exc:
        raise StoreError(
            f"{where}: checkpoint {path.name}: expected a torch checkpoint, got an unreadable "
            f"file ({len(data)} bytes: {_first_line(exc)}){previous}"
        ) from None
    if not isinstance(state, dict):
        raise StoreError(
            f"{where}: checkpoint {path.name}: expected a state dict, got {type(state).__name__}"
        )
    identity = state.pop(IDENTITY, None)
    got = identity.get("run_id") if isinstance(identity, dict) else None
    if got != run_id:
        what = f"a checkpoint of run {got}" if isinstance(got, str) else "no run identity"
        raise StoreError(
            f"{where}: checkpoint {path.name}: expected a checkpoint of this run (run id "
            f"{run_id}), got {what} (copied from another run?), not loaded{previous}"
        )
    return step, state


def stored_config(folder: Path) -> str | None:
    """The config.toml text recorded in the newest checkpoint that passes its checksum, or
    None when there is none (used to name the keys of an edited config.toml)."""
    import pickle

    import torch

    for _, path in reversed(list_checkpoints(folder)):
        data, problem = _verified(path)
        if problem is None:
            try:
                state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError):
                return None  # unreadable: no record of the config
            identity = state.get(IDENTITY) if isinstance(state, dict) else None
            text = identity.get("config") if isinstance(identity, dict) else None
            return text if isinstance(text, str) else None
    return None


def _reason(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        if "Unsupported" in line or "global" in line.lower():
            return line.strip()[:160]
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0][:160] if lines else type(exc).__name__) or type(exc).__name__
