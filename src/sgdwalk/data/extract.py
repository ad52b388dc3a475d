"""Safe tar(.gz) extraction: refuse hostile members, and publish only complete results.

Every member is checked before anything is written: absolute paths, `..` components,
symbolic and hard links, devices and FIFOs are refused, and so is an archive with more
members or more declared bytes than the caller's limits (by default the global ceilings
of `limits`): the headers are read one at a time and reading stops at the first member
past a limit, so a small archive that would expand to gigabytes is refused after reading
about the limit. The caller's `check` then sees every file's declared size (to require
the files it needs, of the sizes it expects) before anything is written. The archive is
then extracted into
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
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath

from sgdwalk.data import limits
from sgdwalk.errors import DataError

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def safe_extract(
    archive: Path,
    target: Path,
    max_bytes: int | None = None,
    max_members: int | None = None,
    check: Callable[[dict[str, int]], None] | None = None,
) -> None:
    """Extract the tar archive `archive` (any compression tarfile reads) so that its members
    end up under `target`: member "a/b.bin" becomes target/a/b.bin.

    `target` may exist already (e.g. the folder that holds the archive), but none of the
    archive's top-level entries may exist inside it.

    Args:
        max_bytes: most bytes the members may declare in total (None: limits.MAX_DATA_BYTES).
        max_members: most members, folders included (None: limits.MAX_ARCHIVE_MEMBERS).
        check: called with {member name: declared size} of the regular files once all
            headers passed, before anything is written; it raises DataError to refuse.

    Raises:
        DataError: unreadable, truncated or non-tar archive; a hostile member; a limit
        exceeded; a refusal by `check`; a top-level entry that already exists. Nothing is
        left under `target` in these cases.
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
    bounds = (limits.MAX_DATA_BYTES if max_bytes is None else max_bytes,
              limits.MAX_ARCHIVE_MEMBERS if max_members is None else max_members)
    try:
        _extract_all(archive, staging, *bounds, check)
        if home == target:
            _move_entries(staging, target)
        else:
            staging.chmod(0o755)  # mkdtemp makes it private; the target is an ordinary folder
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract_all(archive: Path, into: Path, max_bytes: int, max_members: int, check) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = _members(archive, tar, max_bytes, max_members)
            if check is not None:
                check({m.name: m.size for m in members if m.isfile()})
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


def _members(archive: Path, tar: tarfile.TarFile, max_bytes: int, max_members: int) -> list:
    """Every member, each checked as soon as its header is read; stops at the first one past
    a limit, before reading its body. Reading to the end shows truncation too."""
    members, total = [], 0
    for member in tar:
        if len(members) == max_members:
            raise DataError(f"{archive}: expected at most {max_members} members, got more "
                            f"(nothing was extracted)")
        _check_member(archive, member)
        total += member.size
        if total > max_bytes:
            raise DataError(f"{archive}: expected at most {max_bytes} bytes once extracted, "
                            f"got members declaring more, the last {member.name!r} of "
                            f"{member.size} bytes (nothing was extracted)")
        members.append(member)
    return members


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
