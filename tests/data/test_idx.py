"""read_idx: round trips in every IDX dtype, raw and gzip, and a DataError for bad files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgdwalk.data import read_idx
from sgdwalk.errors import DataError

DTYPES = {
    np.uint8: torch.uint8,
    np.int8: torch.int8,
    np.int16: torch.int16,
    np.int32: torch.int32,
    np.float32: torch.float32,
    np.float64: torch.float64,
}


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("np_dtype", list(DTYPES), ids=lambda d: np.dtype(d).name)
def test_round_trip_keeps_values_shape_and_dtype(formats, tmp_path, np_dtype, gz):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((5, 3, 4)) * 100).astype(np_dtype)
    path = formats.write_idx(tmp_path / "f.idx", array, gz=gz)
    out = read_idx(path)
    assert out.dtype == DTYPES[np_dtype]
    assert tuple(out.shape) == (5, 3, 4)
    np.testing.assert_array_equal(out.numpy(), array)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(shape=st.lists(st.integers(0, 4), min_size=1, max_size=4), seed=st.integers(0, 99))
def test_round_trip_for_any_shape(tmp_path_factory, formats, shape, seed):
    # `formats` only hands out pure functions, so sharing it across examples is safe
    array = np.random.default_rng(seed).integers(-30000, 30000, shape).astype(np.int16)
    path = formats.write_idx(tmp_path_factory.mktemp("idx") / "f", array)
    np.testing.assert_array_equal(read_idx(path).numpy(), array)


def test_gzip_is_detected_by_content_not_name(formats, tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    gz_named_raw = tmp_path / "f.gz"
    gz_named_raw.write_bytes(formats.idx_bytes(array))
    raw_named_gz = tmp_path / "f"
    raw_named_gz.write_bytes(gzip.compress(formats.idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(gz_named_raw).numpy(), array)
    np.testing.assert_array_equal(read_idx(raw_named_gz).numpy(), array)


def good_bytes(formats):
    return formats.idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b"\x01" + b[1:], "expected an IDX magic number"),
        (lambda b: b[:2] + b"\x07" + b[3:], "expected an IDX magic number"),
        (lambda b: b[:3] + b"\x00" + b[4:], "expected an IDX magic number"),
        (lambda b: b[:3], "expected an IDX header of 4 bytes, got 3 bytes"),
        (lambda b: b[:10], "expected 16 header bytes for 3 dimensions, got 10"),
        (lambda b: b[:-1], "expected 24 data bytes for shape \\(2, 3, 4\\) of uint8, got 23"),
        (lambda b: b + b"\x00", "expected 24 data bytes for shape \\(2, 3, 4\\) of uint8, got 25"),
        (lambda b: b[:3] + b"\x04" + b[4:], "for shape \\(2, 3, 4, 66051\\) of uint8, got 20"),
    ],
    ids=["magic", "dtype", "ndim0", "short header", "short dims", "short", "long", "wrong ndim"],
)
def test_bad_raw_file_is_a_data_error(formats, tmp_path, mutate, message):
    path = tmp_path / "f"
    path.write_bytes(mutate(good_bytes(formats)))
    with pytest.raises(DataError, match=message):
        read_idx(path)


def test_truncated_gzip_is_a_data_error(formats, tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    data = gzip.compress(formats.idx_bytes(array))
    path = tmp_path / "f.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="expected a complete gzip stream"):
        read_idx(path)


def test_files_of_other_formats_are_data_errors(formats, tmp_path):
    cifar, _, _ = formats.cifar_records(3, seed=0)
    for name, content in [("cifar.bin", cifar), ("text.txt", b"hello world\n" * 10)]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataError):
            read_idx(tmp_path / name)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="expected a readable file"):
        read_idx(tmp_path / "nope")


# ---------------------------------------------------------------------------------------
# hostile sizes: declarations are checked before allocating, decompression stops at them


def gzip_with_tail(path, head: bytes, tail_bytes: int):
    """A gzip file of `head` followed by `tail_bytes` zero bytes, written in 1 MB pieces."""
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(head)
        for start in range(0, tail_bytes, 1 << 20):
            f.write(bytes(min(1 << 20, tail_bytes - start)))
    return path


def peak_bytes(fn) -> int:
    """Peak Python + numpy memory traced while `fn()` runs (its exception swallowed)."""
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
    except DataError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_a_gzip_bomb_is_refused_after_reading_only_what_its_header_declares(formats, tmp_path):
    """64 MB of zeros behind a header declaring 10 images: refused one byte past the 7,840
    declared, never expanded (the first version held the whole expansion in memory)."""
    head = formats.idx_bytes(np.zeros((10, 28, 28), np.uint8))
    path = gzip_with_tail(tmp_path / "bomb.gz", head, 64 << 20)
    assert path.stat().st_size < 100_000  # a 65 KB file
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(info.value) == (f"{path}: expected 7840 data bytes for shape (10, 28, 28) of "
                               f"uint8, got more (the stream goes on past them)")
    assert peak_bytes(lambda: read_idx(path)) < 4 << 20


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_a_header_whose_sizes_overflow_int64_is_one_line(tmp_path, gz):
    """65536^4 = 2^64 elements: the product wrapped to 0 in int64, so an empty body
    matched it and reshaping gave a traceback."""
    data = bytes([0, 0, 0x08, 4]) + np.full(4, 65536, ">u4").tobytes()
    path = tmp_path / "f"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(info.value) == (
        f"{path}: expected at most {2**32} bytes of data, got a header declaring shape "
        f"(65536, 65536, 65536, 65536) of uint8 ({2**64} bytes)")


def test_a_declared_size_no_gzip_could_hold_is_refused_before_allocating(tmp_path):
    """10^9 declared bytes in a 100-byte gzip: deflate expands at most 1032-fold."""
    data = bytes([0, 0, 0x08, 3]) + np.full(3, 1000, ">u4").tobytes()
    path = tmp_path / "f.gz"
    path.write_bytes(gzip.compress(data))
    with pytest.raises(DataError, match="expected a gzip file that can expand to 1000000016 "
                                        "bytes, got [0-9]+ compressed bytes"):
        read_idx(path)
    assert peak_bytes(lambda: read_idx(path)) < 1 << 20


def test_the_ceiling_applies_to_raw_files_too(formats, tmp_path, monkeypatch):
    monkeypatch.setattr("sgdwalk.data.limits.MAX_DATA_BYTES", 1000)
    path = formats.write_idx(tmp_path / "f", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match="expected at most 1000 bytes of data, got a header "
                                        "declaring shape \\(2, 28, 28\\) of uint8 \\(1568 bytes"):
        read_idx(path)
    formats.write_idx(path, np.zeros((1, 28, 28), np.uint8))
    assert tuple(read_idx(path).shape) == (1, 28, 28)
