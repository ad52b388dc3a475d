"""Safe tar(.gz) extraction: refuse hostile members, and publish only complete results.

Every member is checked before anything is written: absolute paths, `..` components,
symbolic and hard links, devices and FIFOs are refused. The archive is then extracted into
a fresh hidden temporary folder next to the target, or inside it when it exists (so the
final renames stay on one file system), with Python's ``filter="data"`` as a second guard.
Only on success are its top-level entries renamed into place. A failure removes the
temporary folder, so no partial dataset is ever left where a later run would trust it.
"""

from __future__ import annotations

import errno
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from sgdwalk.errors import DataError

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def safe_extract(archive: Path, target: Path) -> None:
    """Extract the tar archive `archive` (any compression tarfile reads) so that its members
    end up under `target`: member "a/b.bin" becomes target/a/b.bin.

    `target` may exist already (e.g. the folder that holds the archive), but none of the
    archive's top-level entries may exist inside it.

    Raises:
        DataError: unreadable, truncated or non-tar archive; a hostile member; a top-level
        entry that already exists. Nothing is left under `target` in these cases.
    """
    archive, target = Path(archive), Path(target)
    if target.exists() and not target.is_dir():
        raise DataError(f"{target}: expected a folder to extract into, got a file")
    # stage on the same file system as the final place, so the renames are atomic
    home = target if target.is_dir() else target.parent
    try:
        home.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.extract-", dir=home))
    except OSError as exc:
        raise DataError(f"{home}: expected a writable folder, got {exc}") from None
    try:
        _extract_all(archive, staging)
        if home == target:
            _move_entries(staging, target)
        else:
            staging.chmod(0o755)  # mkdtemp makes it private; the target is an ordinary folder
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract_all(archive: Path, into: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()  # reads the whole archive: truncation shows up here
            for member in members:
                _check_member(archive, member)
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.12
                tar.extractall(into, members=members, filter="data")
            else:  # pragma: no cover - older Pythons rely on _check_member alone
                tar.extractall(into, members=members)
    except DataError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno in _FULL:
            raise DataError(f"{into.parent}: expected free disk space to extract "
                            f"{archive.name}, got: the disk is full") from None
        raise DataError(f"{archive}: expected a complete tar archive, got "
                        f"{_one_line(exc, archive)}") from None


def _one_line(exc: BaseException, archive: Path) -> str:
    """The error as one line: tarfile's several-line "could not be opened" (one line per
    compression it tried) becomes a description of the file."""
    text = str(exc).strip()
    if text and "\n" not in text:
        return text
    try:
        with open(archive, "rb") as f:
            head = f.read(16)
        size = archive.stat().st_size
    except OSError as err:
        return f"an unreadable file ({err.strerror})"
    return f"a file that is not a tar archive ({size} bytes starting {head!r})"


def _check_member(archive: Path, member: tarfile.TarInfo) -> None:
    name = member.name
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not name or name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        problem = "an absolute path"
    elif ".." in parts:
        problem = "a '..' component"
    elif member.issym() or member.islnk():
        problem = f"a link to {member.linkname!r}"
    elif not (member.isfile() or member.isdir()):
        problem = "a device, FIFO or other special file"
    else:
        return
    raise DataError(
        f"{archive}: expected regular files and folders inside the archive, "
        f"got member {name!r} with {problem} (nothing was extracted)"
    )


def _move_entries(staging: Path, target: Path) -> None:
    entries = sorted(staging.iterdir())
    clashes = [e.name for e in entries if (target / e.name).exists()]
    if clashes:
        raise DataError(
            f"{target}: expected no existing {', '.join(clashes)}, got them already there "
            f"(remove them to extract again)"
        )
    for entry in entries:
        os.replace(entry, target / entry.name)
