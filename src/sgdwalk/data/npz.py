"""Reader for NumPy's .npz files (numpy.savez, savez_compressed) that never unpickles and
never expands a member past what it declares.

An .npz is a zip archive of NAME.npy members; each .npy starts with a header declaring its
dtype, shape and memory order. Before any body is read: at most limits.MAX_ARCHIVE_MEMBERS
members whose declared uncompressed sizes add up to at most `max_bytes`; then per member,
a plain numeric dtype (bool, integer, float: never object, which only unpickling could
read) and a declared body that fits the member's declared size. zipfile stops each
member's decompression at that size and checks its CRC, so a zip bomb is refused without
being expanded.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from sgdwalk.data import limits
from sgdwalk.errors import DataError

NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats
HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def read_npz(path: Path, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Every array of an .npz file, by name, in native byte order.

    Args:
        path: the .npz file.
        max_bytes: most bytes all members may declare together (None: limits.MAX_DATA_BYTES).

    Returns:
        {name: array} for each member NAME.npy, with the dtype and shape its header declares.

    Raises:
        DataError: unreadable file, not a zip archive, a member that is not NAME.npy, too
        many members or bytes, a non-numeric dtype, a body that is not what its header
        declares, or a damaged member (CRC, truncation).
    """
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except OSError as exc:
        raise DataError(f"{path}: expected a readable file, got {exc.strerror or exc}") from None
    except zipfile.BadZipFile:
        raise DataError(f"{path}: expected an .npz file (a zip archive of .npy arrays, as "
                        f"numpy.savez writes), got a file that is not a zip archive") from None
    with archive:
        members = archive.infolist()
        if len(members) > limits.MAX_ARCHIVE_MEMBERS:
            raise DataError(f"{path}: expected at most {limits.MAX_ARCHIVE_MEMBERS} arrays, "
                            f"got {len(members)}")
        total = sum(info.file_size for info in members)
        limits.check_declared(str(path), f"{len(members)} members declaring", total, max_bytes)
        return {info.filename[:-4]: _read_member(path, archive, info) for info in members}


def _read_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    name = info.filename
    if not name.endswith(".npy") or "/" in name or len(name) == 4:
        raise DataError(f"{path}: expected members NAME.npy, as numpy.savez writes, "
                        f"got {name!r}")
    where = f"{path}: {name}"
    try:
        with archive.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            if version not in HEADERS:
                raise DataError(f"{where}: expected .npy format version 1.0 or 2.0, got "
                                f"{version[0]}.{version[1]}")
            shape, fortran_order, dtype = HEADERS[version](stream)
            if dtype.kind not in NUMERIC_KINDS or dtype.fields or dtype.subdtype:
                raise DataError(f"{where}: expected a numeric dtype (bool, int, uint, float), "
                                f"got {dtype}")
            n_bytes = math.prod(shape) * dtype.itemsize
            if n_bytes > info.file_size:
                raise DataError(f"{where}: expected at most {info.file_size} bytes (its size "
                                f"in the archive), got a header declaring shape {shape} of "
                                f"{dtype} ({n_bytes} bytes)")
            body, got = limits.read_declared(stream, n_bytes)
            if got < n_bytes or stream.read(1):
                raise DataError(f"{where}: expected {n_bytes} data bytes for shape {shape} of "
                                f"{dtype}, got {'more' if got == n_bytes else got}")
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError) as exc:
        raise DataError(f"{where}: expected a complete .npy member, got {exc}") from None
    array = body.view(dtype)
    array = array.reshape(shape[::-1]).T if fortran_order else array.reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)
