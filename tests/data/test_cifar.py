"""cifar10: the binary reader, the study split and normalisation, and the archive paths."""

from __future__ import annotations

import hashlib
import tarfile

import numpy as np
import pytest
import torch

from sgdwalk.config import DataConfig
from sgdwalk.data import augment_cifar, load_dataset, read_cifar_binary
from sgdwalk.errors import DataError

PER_FILE = 20  # 100 training records -> default val min(5000, 100 // 10) = 10
MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2023, 0.1994, 0.2010]).view(1, 3, 1, 1)


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def write_batches(folder, files):
    folder.mkdir(parents=True)
    for name, (data, _, _) in files.items():
        (folder / name).write_bytes(data)
    return folder


def as_official(monkeypatch, archive: bytes) -> None:
    """Make `archive` (of PER_FILE records per file) pass as the official one: its MD5 and
    its record count are what cifar.py checks a local or downloaded archive against."""
    monkeypatch.setattr("sgdwalk.data.cifar.CIFAR10_MD5", hashlib.md5(archive).hexdigest())
    monkeypatch.setattr("sgdwalk.data.cifar.RECORDS_PER_FILE", PER_FILE)


def expected(files, names):
    x = np.concatenate([files[n][1] for n in names])
    y = np.concatenate([files[n][2] for n in names])
    return (torch.from_numpy(x).float() / 255 - MEAN) / STD, torch.from_numpy(y).long()


def test_reader_returns_pixels_chw_and_labels(formats, tmp_path):
    data, pixels, labels = formats.cifar_records(7, seed=1)
    (tmp_path / "b.bin").write_bytes(data)
    x, y = read_cifar_binary(tmp_path / "b.bin")
    assert x.dtype == torch.uint8 and tuple(x.shape) == (7, 3, 32, 32)
    assert y.dtype == torch.int64 and y.tolist() == labels.tolist()
    np.testing.assert_array_equal(x.numpy(), pixels)
    # CHW layout: the first pixel byte after the label is red (0, 0), the 1025th green (0, 0)
    assert x[0, 0, 0, 0] == data[1] and x[0, 1, 0, 0] == data[1 + 1024]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[:-1], "expected a CIFAR-10 binary file of whole 3073-byte records"),
        (lambda b: b + b"\x00", "got 9220 bytes"),
        (lambda b: b"", "got 0 bytes"),
        (lambda b: b"\x0a" + b[1:], "expected label bytes 0..9, got 10"),
    ],
    ids=["truncated", "extra byte", "empty", "bad label"],
)
def test_reader_rejects_bad_files(formats, tmp_path, mutate, message):
    data, _, _ = formats.cifar_records(3, seed=0)
    (tmp_path / "b.bin").write_bytes(mutate(data))
    with pytest.raises(DataError, match=message):
        read_cifar_binary(tmp_path / "b.bin")


def test_reader_rejects_another_format(formats, tmp_path):
    path = formats.write_idx(tmp_path / "idx", np.zeros((5, 28, 28), np.uint8))
    with pytest.raises(DataError, match="expected a CIFAR-10 binary file"):
        read_cifar_binary(path)


@pytest.mark.parametrize("layout", ["parent", "batch folder"])
def test_loads_the_study_split_from_a_folder(formats, tmp_path, layout):
    files = formats.cifar_files(PER_FILE)
    batches = write_batches(tmp_path / "c" / "cifar-10-batches-bin", files)
    root = tmp_path / "c" if layout == "parent" else batches
    ds = load_dataset(DataConfig(name="cifar10", root=str(root)))
    assert (len(ds.train), len(ds.val), len(ds.test), len(ds.probe)) == (90, 10, 20, 90)
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10
    assert ds.source == str(batches) and ds.augment.func is augment_cifar
    x, y = expected(files, [f"data_batch_{i}.bin" for i in range(1, 6)])
    torch.testing.assert_close(ds.train.x, x[:90], atol=1e-5, rtol=0)
    torch.testing.assert_close(ds.val.x, x[90:], atol=1e-5, rtol=0)  # end of data_batch_5
    assert torch.equal(ds.train.y, y[:90]) and torch.equal(ds.val.y, y[90:])
    tx, ty = expected(files, ["test_batch.bin"])
    torch.testing.assert_close(ds.test.x, tx, atol=1e-5, rtol=0)
    assert torch.equal(ds.test.y, ty)


def test_val_size_augment_and_train_size_follow_the_config(formats, tmp_path):
    write_batches(tmp_path / "cifar-10-batches-bin", formats.cifar_files(PER_FILE))
    cfg = DataConfig(name="cifar10", root=str(tmp_path), val_size=30, augment=False, train_size=7)
    ds = load_dataset(cfg)
    assert (len(ds.train), len(ds.val), len(ds.probe)) == (7, 30, 7)
    assert ds.augment is None


@pytest.mark.parametrize("root_is_archive", [True, False], ids=["archive", "folder"])
def test_local_archive_is_extracted_next_to_itself(formats, tmp_path, monkeypatch,
                                                   root_is_archive):
    data, files = formats.cifar_archive(PER_FILE)
    as_official(monkeypatch, data)
    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(data)
    root = archive if root_is_archive else tmp_path
    ds = load_dataset(DataConfig(name="cifar10", root=str(root)))
    assert ds.source == str(tmp_path / "cifar-10-batches-bin")
    assert torch.equal(ds.test.y, expected(files, ["test_batch.bin"])[1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-batches-bin", archive.name]


def test_download_fetches_verifies_extracts_and_loads(formats, http_server, monkeypatch, tmp_path):
    data, files = formats.cifar_archive(PER_FILE)
    http_server.serve("/kriz/cifar-10-binary.tar.gz", data)
    as_official(monkeypatch, data)
    root = tmp_path / "cifar"
    cfg = DataConfig(name="cifar10", root=str(root), download=True, url=http_server.base + "/kriz")
    ds = load_dataset(cfg)
    assert tree(root) == sorted(
        ["cifar-10-binary.tar.gz", "cifar-10-batches-bin", "cifar-10-batches-bin/batches.meta.txt"]
        + [f"cifar-10-batches-bin/{n}" for n in files]
    )
    assert torch.equal(
        ds.train.y, expected(files, [f"data_batch_{i}.bin" for i in range(1, 6)])[1][:90]
    )


def test_download_with_the_wrong_checksum_leaves_nothing(formats, http_server, tmp_path):
    data, _ = formats.cifar_archive(PER_FILE)  # not the official archive: md5 differs
    http_server.serve("/cifar-10-binary.tar.gz", data)
    root = tmp_path / "cifar"
    cfg = DataConfig(name="cifar10", root=str(root), download=True, url=http_server.base)
    got = hashlib.md5(data).hexdigest()
    with pytest.raises(
        DataError, match=f"expected md5 c32a1d4ab5d03f1284b67883e8d87530, got {got}"
    ):
        load_dataset(cfg)
    assert tree(root) == []


def test_interrupted_download_leaves_nothing(formats, http_server, monkeypatch, tmp_path):
    data, _ = formats.cifar_archive(PER_FILE)
    http_server.serve("/cifar-10-binary.tar.gz", data, kind="truncate")
    monkeypatch.setattr("sgdwalk.data.cifar.CIFAR10_MD5", hashlib.md5(data).hexdigest())
    root = tmp_path / "cifar"
    cfg = DataConfig(name="cifar10", root=str(root), download=True, url=http_server.base)
    with pytest.raises(DataError, match="Content-Length"):
        load_dataset(cfg)
    assert tree(root) == []


def test_hostile_local_archive_is_refused_with_nothing_extracted(formats, tmp_path):
    data = formats.tar_gz(
        [
            (formats.member("cifar-10-batches-bin/data_batch_1.bin"), b"\x00" * 3073),
            (formats.member("../evil"), b"evil"),
        ]
    )
    root = tmp_path / "root"
    root.mkdir()
    (root / "cifar-10-binary.tar.gz").write_bytes(data)
    with pytest.raises(DataError, match="got member '../evil'"):
        load_dataset(DataConfig(name="cifar10", root=str(root)))
    assert tree(tmp_path) == ["root", "root/cifar-10-binary.tar.gz"]


def test_archive_without_the_batches_is_a_data_error(formats, tmp_path):
    data = formats.tar_gz([(formats.member("other/readme.txt"), b"hi")])
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(data)
    with pytest.raises(DataError, match="got an archive without them"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))


def batch_archive(formats, files: dict[str, bytes], extra=()) -> bytes:
    """An archive laid out like the official one holding only `files` (name -> bytes)."""
    entries = [(formats.member("cifar-10-batches-bin", tarfile.DIRTYPE), None)]
    entries += [(formats.member(f"cifar-10-batches-bin/{n}"), d) for n, d in files.items()]
    return formats.tar_gz([*entries, *extra])


def test_a_local_archive_that_is_not_the_official_one_is_refused(formats, tmp_path,
                                                                  monkeypatch):
    """Well formed but another archive: the first version extracted and trained on it."""
    data, _ = formats.cifar_archive(PER_FILE)
    monkeypatch.setattr("sgdwalk.data.cifar.RECORDS_PER_FILE", PER_FILE)  # sizes pass
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(data)
    with pytest.raises(DataError) as info:
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    assert str(info.value) == (f"{tmp_path / 'cifar-10-binary.tar.gz'}: expected md5 "
                               f"c32a1d4ab5d03f1284b67883e8d87530, got "
                               f"{hashlib.md5(data).hexdigest()}")
    assert tree(tmp_path) == ["cifar-10-binary.tar.gz"]


def test_an_archive_lacking_batch_files_is_refused_and_does_not_block_the_next_run(
        formats, tmp_path, monkeypatch):
    """One batch file of six: the first version moved it into place, failed, and then every
    later run failed with "got them already there"."""
    files = formats.cifar_files(PER_FILE)
    data = batch_archive(formats, {"data_batch_1.bin": files["data_batch_1.bin"][0]})
    as_official(monkeypatch, data)
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(data)
    for _ in range(2):
        with pytest.raises(DataError) as info:
            load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
        assert str(info.value).endswith(
            "got an archive without them (data_batch_2.bin, data_batch_3.bin, data_batch_4.bin, "
            "data_batch_5.bin, test_batch.bin missing; nothing was extracted)")
        assert tree(tmp_path) == ["cifar-10-binary.tar.gz"]


def test_an_archive_declaring_more_than_the_official_bytes_is_refused_before_writing(
        formats, tmp_path, monkeypatch):
    """16 MB of zeros packed into 16 KB: refused from the headers, nothing written (the
    first version extracted all of it, 1.1 GB for a 1 MB archive in the reported case)."""
    files = {name: data for name, (data, _, _) in formats.cifar_files(PER_FILE).items()}
    files["data_batch_1.bin"] = bytes(16 << 20)
    data = batch_archive(formats, files)
    assert len(data) < 1 << 20  # five random batch files and 16 MB of zeros in 330 KB
    as_official(monkeypatch, data)
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(data)
    limit = 6 * PER_FILE * 3073 + (1 << 20)
    with pytest.raises(DataError, match=f"expected at most {limit} bytes once extracted, got "
                       f"members declaring more, the last 'cifar-10-batches-bin/data_batch_1.bin'"
                       f" of {16 << 20} bytes \\(nothing was extracted\\)"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    assert tree(tmp_path) == ["cifar-10-binary.tar.gz"]


def test_an_archive_with_too_many_members_is_refused(formats, tmp_path, monkeypatch):
    files = {name: data for name, (data, _, _) in formats.cifar_files(PER_FILE).items()}
    extra = [(formats.member(f"cifar-10-batches-bin/x{i}.txt"), b"x") for i in range(10)]
    data = batch_archive(formats, files, extra)
    as_official(monkeypatch, data)
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(data)
    with pytest.raises(DataError, match="expected at most 16 members, got more"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    assert tree(tmp_path) == ["cifar-10-binary.tar.gz"]


def test_a_batch_file_of_another_record_count_is_refused(formats, tmp_path, monkeypatch):
    files = {name: data for name, (data, _, _) in formats.cifar_files(PER_FILE).items()}
    files["test_batch.bin"] = files["test_batch.bin"][: 19 * 3073]
    data = batch_archive(formats, files)
    as_official(monkeypatch, data)
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(data)
    with pytest.raises(DataError, match="cifar-10-batches-bin/test_batch.bin: expected the "
                                        "official 20 records, got 19 \\(nothing was extracted"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    assert tree(tmp_path) == ["cifar-10-binary.tar.gz"]


def test_missing_data_says_where_and_how(tmp_path, isolated_data_root):
    with pytest.raises(DataError) as info:
        load_dataset(DataConfig(name="cifar10"))
    message = str(info.value)
    assert str(isolated_data_root / "cifar10") in message and "no such folder" in message
    assert "data.download=true" in message and "\n" not in message


def test_a_truncated_batch_file_is_a_data_error(formats, tmp_path):
    files = formats.cifar_files(PER_FILE)
    batches = write_batches(tmp_path / "cifar-10-batches-bin", files)
    (batches / "data_batch_3.bin").write_bytes(files["data_batch_3.bin"][0][:-100])
    with pytest.raises(DataError, match="data_batch_3.bin: expected a CIFAR-10 binary file"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))


@pytest.mark.slow
def test_full_size_files_give_the_study_split(tmp_path):
    """10,000 records per file, as in the official archive: 45,000 / 5,000 / 10,000."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = rng.integers(0, 256, (10000, 3073), dtype=np.uint8)
        records[:, 0] %= 10
        (folder / name).write_bytes(records.tobytes())
    ds = load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    assert (len(ds.train), len(ds.val), len(ds.test), len(ds.probe)) == (45000, 5000, 10000, 512)
    last = np.frombuffer((folder / "data_batch_5.bin").read_bytes(), np.uint8).reshape(-1, 3073)
    assert ds.val.y.tolist() == last[5000:, 0].astype(int).tolist()
