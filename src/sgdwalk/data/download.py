"""Checksummed downloads: a file appears at its destination only once it is whole and verified.

The body streams to ``<dest>.part``; after the checksum passes it is moved into place with
one atomic `os.replace`. On any failure (HTTP error, short body, checksum mismatch,
interruption) the partial file is deleted, so a later run never trusts half a download.
The partial file is always a new file (``O_CREAT | O_EXCL | O_NOFOLLOW``): a symbolic link
planted at its path is refused, never followed, so no other file can be overwritten.
"""

from __future__ import annotations

import errno
import http.client
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from sgdwalk.data.checksums import check_digests, new_digests
from sgdwalk.errors import DataError

CHUNK_BYTES = 1 << 20  # read size while streaming
TIMEOUT_S = 60.0  # socket timeout per blocking operation, not for the whole download


def fetch(
    url: str,
    dest: Path,
    md5: str | None = None,
    sha256: str | None = None,
    progress: bool = False,
) -> Path:
    """Download `url` to `dest`, verify its checksums, and return `dest`.

    Args:
        url: an http:// or https:// address.
        dest: final path; its folder is created. An existing file is replaced on success.
        md5, sha256: expected hex digests (either, both or neither).
        progress: show a tqdm progress bar on stderr.

    Raises:
        DataError: bad scheme, network or HTTP error, body shorter than its Content-Length,
        a checksum mismatch ("<dest>: expected md5 X, got Y"), or a symbolic link (or
        anything but a regular file) at ``<dest>.part``; the partial file is gone.
    """
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise DataError(f"{url}: expected an http:// or https:// address, got scheme {scheme!r}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    out = _create(part)  # before the try: a refused path is not ours to delete
    try:
        digests = _stream(url, out, progress)
        check_digests(dest, digests, md5, sha256)
        os.replace(part, dest)
    except BaseException:  # including KeyboardInterrupt: never leave a partial file behind
        part.unlink(missing_ok=True)
        raise
    return dest


def _create(part: Path):
    """A new, empty file at `part`, opened for writing without following any link.

    A regular file already there is a partial download of a killed run: it is replaced.
    A symbolic link is refused (it could point at any file the user can write)."""
    if part.is_symlink():
        raise DataError(f"{part}: expected no file or a regular file where the download is "
                        f"written, got a symbolic link to {os.readlink(part)!r} (remove it "
                        f"to download)")
    if part.is_dir():
        raise DataError(f"{part}: expected a new file to download into, got a folder")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        part.unlink(missing_ok=True)
        return os.fdopen(os.open(part, flags, 0o644), "wb")
    except OSError as exc:  # something planted there since the checks: refused, not followed
        what = "a file planted there meanwhile" if exc.errno in (errno.EEXIST, errno.ELOOP) \
            else exc.strerror or exc
        raise DataError(f"{part}: expected a new file to download into, got {what}") from None


def _stream(url: str, out, progress: bool) -> dict:
    """Write the body of `url` to the open file `out` (closed on return), returning its md5
    and sha256 hash objects."""
    digests = new_digests()
    try:
        with out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            with _bar(total, progress, url) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    for digest in digests.values():
                        digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise DataError(f"{url}: expected HTTP status 200, got {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"{url}: expected a complete download, got {reason!r}") from None
    if total is not None and received != total:
        raise DataError(f"{url}: expected {total} bytes (Content-Length), got {received}")
    return digests


def _bar(total: int | None, enabled: bool, url: str):
    from tqdm import tqdm

    name = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1] or url
    return tqdm(
        total=total, unit="B", unit_scale=True, desc=name, disable=not enabled, file=sys.stderr
    )
