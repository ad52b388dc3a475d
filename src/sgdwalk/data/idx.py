"""Reader for the IDX format of MNIST and Fashion-MNIST (raw or gzip-compressed).

An IDX file is a 4-byte magic number 0x00 0x00 <dtype code> <ndim>, then ndim big-endian
uint32 sizes, then prod(sizes) big-endian values in row-major order and nothing else.

The file is streamed: the header is read and its declared body size, prod(sizes) x
itemsize, is checked against `limits.MAX_DATA_BYTES` (and, for gzip, against what the
compressed file could possibly expand to) before anything is allocated; the body is then
read up to that size and one byte more, so a gzip bomb is refused after reading at most
what its header promised.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from sgdwalk.data import limits
from sgdwalk.errors import DataError

# IDX dtype code -> big-endian numpy dtype (torch.from_numpy gives the matching torch dtype)
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (``.gz`` or raw) into a tensor of its declared dtype and sizes.

    Args:
        path: the file; gzip is detected from its first bytes, not its name.

    Returns:
        A CPU tensor of shape (d_1, ..., d_ndim) in the file's dtype (uint8 for MNIST),
        converted to native byte order.

    Raises:
        DataError: unreadable file, bad gzip stream, wrong magic number, unknown dtype code,
        a declared size above the ceiling (or above what the gzip could hold), or a body
        shorter or longer than the header's sizes say.
    """
    path = Path(path)
    try:
        raw = open(path, "rb")  # closed by the `with` below, which wraps the gzip reader too
    except OSError as exc:
        raise DataError(f"{path}: expected a readable file, got {exc.strerror or exc}") from None
    compressed = False
    with raw:
        try:
            size = os.fstat(raw.fileno()).st_size
            compressed = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            if not compressed:
                return _parse(path, raw, body_limit=size)
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _parse(path, stream, body_limit=None, packed=size)
        except (OSError, EOFError, zlib.error) as exc:
            if not compressed:
                raise DataError(f"{path}: expected a readable file, got {exc}") from None
            raise DataError(f"{path}: expected a complete gzip stream, got {exc}") from None


def _parse(path: Path, stream, body_limit: int | None, packed: int = 0) -> torch.Tensor:
    """The tensor in `stream`. `body_limit` is the raw file's size (so a wrong body length
    is refused from the size alone); `packed` the gzip file's size (None body_limit)."""
    head = stream.read(4)
    if len(head) < 4:
        raise DataError(f"{path}: expected an IDX header of 4 bytes, got {len(head)} bytes")
    zero0, zero1, code, ndim = head
    if zero0 or zero1 or code not in IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path}: expected an IDX magic number 0x0000<dtype><ndim> with dtype in "
            f"{', '.join(f'0x{c:02X}' for c in IDX_DTYPES)} and ndim >= 1, got 0x{head.hex()}"
        )
    header = 4 + 4 * ndim
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(
            f"{path}: expected {header} header bytes for {ndim} dimensions, got {4 + len(dims)}"
        )
    shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
    dtype = IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: sizes near 2**32 cannot wrap
    declared = f"a header declaring shape {shape} of {dtype.name}"
    limits.check_declared(str(path), declared, expected)
    if body_limit is not None and body_limit - header != expected:
        raise DataError(f"{path}: expected {expected} data bytes for shape {shape} of "
                        f"{dtype.name}, got {body_limit - header}")
    # deflate's ratio bounds what `packed` bytes can hold (+1 KiB: gzip's own header fields)
    if body_limit is None and header + expected > limits.DEFLATE_MAX_RATIO * packed + 1024:
        raise DataError(f"{path}: expected a gzip file that can expand to {header + expected} "
                        f"bytes, got {packed} compressed bytes ({declared})")
    body, got = limits.read_declared(stream, expected)
    if got < expected:
        raise DataError(f"{path}: expected {expected} data bytes for shape {shape} of "
                        f"{dtype.name}, got {got}")
    if stream.read(1):  # one byte past the declared body: refused without reading the rest
        raise DataError(f"{path}: expected {expected} data bytes for shape {shape} of "
                        f"{dtype.name}, got more (the stream goes on past them)")
    array = body.view(dtype).reshape(shape)
    # native byte order; a no-op view for single bytes, a copy for wider types
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=False))
