"""Checksums of dataset files: the same check for a download and for a file already on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sgdwalk.errors import DataError

CHUNK_BYTES = 1 << 20  # read size while hashing


def new_digests() -> dict:
    """Fresh md5 and sha256 hash objects, keyed by name, to update while streaming."""
    return {"md5": hashlib.md5(usedforsecurity=False), "sha256": hashlib.sha256()}


def check_digests(where: Path | str, digests: dict, md5: str | None, sha256: str | None):
    """Raise DataError "<where>: expected md5 X, got Y" unless every given digest matches."""
    for kind, want in (("md5", md5), ("sha256", sha256)):
        got = digests[kind].hexdigest()
        if want is not None and got != want.lower():
            raise DataError(f"{where}: expected {kind} {want.lower()}, got {got}")


def verify_file(path: Path, md5: str | None = None, sha256: str | None = None) -> None:
    """Check a file on disk against its expected hex digests (either, both or neither).

    Raises:
        DataError: unreadable file, or a digest that differs ("<path>: expected md5 X, got Y").
    """
    digests = new_digests()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                for digest in digests.values():
                    digest.update(chunk)
    except OSError as exc:
        raise DataError(f"{path}: expected a readable file, got {exc.strerror or exc}") from None
    check_digests(path, digests, md5, sha256)
