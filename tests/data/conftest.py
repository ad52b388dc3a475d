"""Fixtures for the data tests: files in the official formats, written into tmp_path, and a
local HTTP server on 127.0.0.1 that serves them (normally, truncated, or as an error)."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

IDX_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of `array`: magic, big-endian uint32 sizes, big-endian values."""
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim])
    sizes = np.asarray(array.shape, dtype=">u4").tobytes()
    return header + sizes + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def mnist_arrays(n_train: int, n_test: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random uint8 images (N, 28, 28) and labels 0..9 for the four MNIST file names."""
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        out[f"{prefix}-images-idx3-ubyte"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        out[f"{prefix}-labels-idx1-ubyte"] = (np.arange(n) % 10).astype(np.uint8)
    return out


def write_mnist(folder: Path, arrays: dict[str, np.ndarray], gz: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for base, array in arrays.items():
        write_idx(folder / (f"{base}.gz" if gz else base), array, gz=gz)
    return folder


def cifar_records(n: int, seed: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """n CIFAR-10 binary records: (file bytes, pixels uint8 (n, 3, 32, 32), labels (n,))."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    records = np.concatenate([labels[:, None], pixels.reshape(n, -1)], axis=1)
    return records.tobytes(), pixels, labels


CIFAR_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)


def cifar_files(per_file: int) -> dict[str, tuple[bytes, np.ndarray, np.ndarray]]:
    """The six batch files with `per_file` records each, distinct seeds per file."""
    return {name: cifar_records(per_file, seed) for seed, name in enumerate(CIFAR_FILES)}


def tar_gz(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A .tar.gz holding the given members (data for regular files, None otherwise)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def cifar_archive(per_file: int) -> tuple[bytes, dict]:
    """cifar-10-binary.tar.gz bytes laid out like the official one, and its files."""
    files = cifar_files(per_file)
    entries = [(member("cifar-10-batches-bin", tarfile.DIRTYPE), None)]
    entries.append((member("cifar-10-batches-bin/batches.meta.txt"), b"airplane\nautomobile\n"))
    for name, (data, _, _) in files.items():
        entries.append((member(f"cifar-10-batches-bin/{name}"), data))
    return tar_gz(entries), files


@pytest.fixture
def formats():
    """Writers and builders of fixture files in the official formats."""
    return SimpleNamespace(
        idx_bytes=idx_bytes,
        write_idx=write_idx,
        mnist_arrays=mnist_arrays,
        write_mnist=write_mnist,
        cifar_records=cifar_records,
        cifar_files=cifar_files,
        cifar_archive=cifar_archive,
        tar_gz=tar_gz,
        member=member,
    )


@pytest.fixture(autouse=True)
def isolated_data_root(tmp_path, monkeypatch):
    """No test reads or writes the real cache: default_data_root() is a fresh folder."""
    root = tmp_path / "data-root"
    monkeypatch.setenv("SGDWALK_DATA", str(root))
    return root
