"""Reader for the IDX format of MNIST and Fashion-MNIST (raw or gzip-compressed).

An IDX file is a 4-byte magic number 0x00 0x00 <dtype code> <ndim>, then ndim big-endian
uint32 sizes, then prod(sizes) big-endian values in row-major order and nothing else.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from sgdwalk.errors import DataError

# IDX dtype code -> (big-endian numpy dtype, torch dtype)
IDX_DTYPES = {
    0x08: (np.dtype(">u1"), torch.uint8),
    0x09: (np.dtype(">i1"), torch.int8),
    0x0B: (np.dtype(">i2"), torch.int16),
    0x0C: (np.dtype(">i4"), torch.int32),
    0x0D: (np.dtype(">f4"), torch.float32),
    0x0E: (np.dtype(">f8"), torch.float64),
}
GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic (whatever its name)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: expected a readable file, got {exc.strerror or exc}") from None
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: expected a complete gzip stream, got {exc}") from None


def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (``.gz`` or raw) into a tensor of its declared dtype and sizes.

    Args:
        path: the file; gzip is detected from its first bytes, not its name.

    Returns:
        A CPU tensor of shape (d_1, ..., d_ndim) in the file's dtype (uint8 for MNIST),
        converted to native byte order.

    Raises:
        DataError: unreadable file, bad gzip stream, wrong magic number, unknown dtype code,
        or a body that is shorter or longer than the header's sizes say.
    """
    data = read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: expected an IDX header of 4 bytes, got {len(data)} bytes")
    zero0, zero1, code, ndim = data[:4]
    if zero0 or zero1 or code not in IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path}: expected an IDX magic number 0x0000<dtype><ndim> with dtype in "
            f"{', '.join(f'0x{c:02X}' for c in IDX_DTYPES)} and ndim >= 1, got 0x{data[:4].hex()}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{path}: expected {header} header bytes for {ndim} dimensions, got {len(data)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    np_dtype, torch_dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{path}: expected {expected} data bytes for shape {shape} of {np_dtype.name}, "
            f"got {len(data) - header}"
        )
    array = np.frombuffer(data, dtype=np_dtype, offset=header).reshape(shape)
    # astype copies into native order and a writable buffer torch can own
    return torch.from_numpy(array.astype(np_dtype.newbyteorder("="), copy=True))
