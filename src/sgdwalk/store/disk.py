"""Files of a run folder: atomic writes, the writer lock, and OS errors turned into StoreErrors.

Every write of a whole file goes to a temporary sibling first, is fsynced, then renamed over
the target with `os.replace` and the folder is fsynced: a reader or a crash sees the old file
or the new one, never half of one. A new run folder is made the same way, as a whole folder
(`birth_name`; see `RunStore.create`).
"""

from __future__ import annotations

import errno
import fcntl
import glob
import os
import secrets
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from sgdwalk.errors import RunLockedError, StoreError

LOCK_NAME = ".lock"
TMP_MARK = ".tmp-"

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
_READ_ONLY = {errno.EACCES, errno.EPERM, errno.EROFS}
_HELD = {errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES}
_LOCK_TRIES = 5  # a lock held for an instant (`lock_holder` peeking) is waited for


def fault(exc: BaseException, where: Path | str, doing: str) -> StoreError:
    """A one-line StoreError for an OSError or sqlite3.Error raised while `doing` in `where`."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, OSError):
        detail = exc.strerror or str(exc) or type(exc).__name__
        if exc.errno in _FULL:
            got = f"the disk is full ({detail})"
            return StoreError(f"{where}: expected free disk space to {doing}, got: {got}")
        if exc.errno in _READ_ONLY:
            got = f"{detail} ({exc.filename})" if exc.filename else detail
            return StoreError(f"{where}: expected a writable folder to {doing}, got: {got}")
        return StoreError(f"{where}: expected to {doing}, got {type(exc).__name__}: {detail}")
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorname", "") or type(exc).__name__
        if code.startswith("SQLITE_FULL"):
            got = f"the disk is full ({exc})"
            return StoreError(f"{where}: expected free disk space to {doing}, got: {got}")
        if code.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")):
            got = f"{exc} ({code})"
            return StoreError(f"{where}: expected a writable metric store to {doing}, got: {got}")
        if code.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
            got = f"a damaged file ({exc})"
            return StoreError(f"{where}: expected an sqlite metric store, got {got}")
        return StoreError(f"{where}: expected to {doing}, got sqlite error {code}: {exc}")
    return StoreError(f"{where}: expected to {doing}, got {type(exc).__name__}: {exc}")


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[BinaryIO], None], where: Path | str) -> None:
    """Write `path` through `write(file)` into a temporary sibling, fsync, rename over `path`."""
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(exc, (OSError, sqlite3.Error)):
            raise fault(exc, where, f"write {path.name}") from None
        raise
    fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str, where: Path | str) -> None:
    data = text.encode("utf-8")
    write_atomic(path, lambda f: f.write(data), where)


def make_whole(path: Path, fill: Callable[[Path], None], where: str) -> WriterLock | None:
    """Make folder `path` appear whole: fill(tmp) a new temporary sibling (`birth_name`)
    while holding its writer lock, fsync it, rename it to `path` (which may be an empty
    folder) and fsync the parent. A kill at any point leaves no `path`, only a hidden
    temporary folder that the next maker removes (`remove_stale_births`).

    Returns the writer lock, still held (a lock follows the inode through the rename), or
    None when another process renamed its own `path` into place first (ours is removed).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fault(exc, where, "create the run folder") from None
    remove_stale_births(path)
    tmp = birth_name(path)
    try:
        tmp.mkdir()
    except OSError as exc:  # name the folder the user asked for, not its temporary name
        raise fault(OSError(exc.errno, exc.strerror, str(path)), where,
                    "create the run folder") from None
    lock = None
    try:
        lock = WriterLock(tmp, where)
        fill(tmp)
        fsync_dir(tmp)
        try:
            os.rename(tmp, path)  # replaces an empty folder; refuses a non-empty one
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise fault(exc, where, "move the new run folder into place") from None
            lock.release()
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        fsync_dir(path.parent)
        return lock
    except BaseException:
        if lock is not None:
            lock.release()
        shutil.rmtree(tmp, ignore_errors=True)  # a no-op once it has been renamed
        raise


def birth_name(path: Path) -> Path:
    """A new temporary sibling to make run folder `path` in before renaming it to `path`:
    `.NAME.tmp-PID.RANDOM` (unique even for two makers in one process)."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}.{secrets.token_hex(4)}")


def remove_stale_births(path: Path) -> None:
    """Delete the temporary siblings of run folder `path` whose makers died before renaming
    them into place: their pid is gone and no process holds their writer lock (a maker on
    another machine keeps its lock, so its folder stays). A maker that fails while alive
    removes its own."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}{TMP_MARK}*"):
        pid = tmp.name.rpartition(TMP_MARK)[2].partition(".")[0]
        if tmp.is_dir() and pid.isdigit() and not _alive(int(pid)) \
                and lock_holder(tmp) is None:
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_tmp(folder: Path) -> None:
    """Delete temporary files a crashed writer left behind (only call while holding the lock)."""
    for p in folder.glob(f".*{TMP_MARK}*"):
        try:
            p.unlink()
        except OSError:
            pass


class WriterLock:
    """An exclusive `fcntl.flock` on RUN_DIR/.lock, holding the writer's pid.

    flock locks belong to an open file description, so a second open of the same run in the
    same process is refused too. The kernel drops the lock when the process dies, so a crashed
    writer never leaves a run locked.
    """

    def __init__(self, run_dir: Path, where: str | None = None):
        self.path = run_dir / LOCK_NAME
        self._fd: int | None = None
        where = where or f"run {run_dir}"
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise fault(exc, where, "take the writer lock") from None
        for attempt in range(_LOCK_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno in _HELD and attempt + 1 < _LOCK_TRIES:
                    time.sleep(0.01)
                    continue
                holder = _read_pid(fd)
                os.close(fd)
                if exc.errno in _HELD:
                    raise RunLockedError(
                        f"run {run_dir} is being written by another process (pid {holder})"
                    ) from None
                raise fault(exc, where, "take the writer lock") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the pid is only for the message of a refused writer
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


def lock_holder(run_dir: Path) -> str | None:
    """The pid (text; "unknown" when unreadable) of the process holding the writer lock of
    `run_dir`, or None when it is free. Peeks by taking the lock for an instant, which a
    writer starting at that moment waits out (`_LOCK_TRIES`)."""
    try:
        fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise fault(exc, f"run {run_dir}", "read the writer lock") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in _HELD:
            return _read_pid(fd)
        raise fault(exc, f"run {run_dir}", "read the writer lock") from None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"
