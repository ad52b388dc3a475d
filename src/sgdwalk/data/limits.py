"""Ceilings on what one untrusted dataset file may make the process read, hold or write.

Every format sgdwalk reads declares its sizes before its body (an IDX header, a tar
member's header, an .npy header). Readers check the declaration against these ceilings
*before* allocating, then stop every decompression at the declared size, so a small hostile
file (a 2 MB gzip that expands to gigabytes) is refused after reading at most what it
declared, never after the expansion.
"""

from __future__ import annotations

import numpy as np

from sgdwalk.errors import DataError

# 4 GiB: one file's decompressed body, one archive's extracted bytes, one .npz's arrays.
# The largest built-in file is 47 MB (MNIST's training images) and CIFAR-10 extracts to
# 185 MB, so only a hostile or unsuitable file comes near it.
MAX_DATA_BYTES = 1 << 32
MAX_ARCHIVE_MEMBERS = 10_000  # entries in one tar or zip archive (CIFAR-10's has 9)
DEFLATE_MAX_RATIO = 1032  # deflate never expands its input more than this (RFC 1951)
CHUNK_BYTES = 1 << 20  # read size while streaming a body


def check_declared(where: str, what: str, n_bytes: int, limit: int | None = None) -> None:
    """Refuse a declared size above `limit` (None: MAX_DATA_BYTES) with one line.

    Args:
        where: the file, for the message.
        what: what declared the size, e.g. "a header declaring shape (60000, 28, 28)".
        n_bytes: the declared size in bytes (a Python int, so it cannot overflow).
    """
    limit = MAX_DATA_BYTES if limit is None else limit
    if n_bytes > limit:
        raise DataError(f"{where}: expected at most {limit} bytes of data, got {what} "
                        f"({n_bytes} bytes)")


def read_declared(stream, n_bytes: int) -> tuple[np.ndarray, int]:
    """Read at most `n_bytes` from a binary stream into one new uint8 array, chunk by chunk.

    The array is allocated once at the declared size, which the caller has checked; the
    pages of np.empty are mapped only when written, so memory grows with the bytes that
    actually arrive, not with the declaration. Returns the array and the count read
    (below n_bytes when the body is short).
    """
    buffer = np.empty(n_bytes, dtype=np.uint8)
    view = memoryview(buffer)
    got = 0
    while got < n_bytes:
        count = stream.readinto(view[got : got + CHUNK_BYTES])
        if not count:
            break
        got += count
    return buffer, got
