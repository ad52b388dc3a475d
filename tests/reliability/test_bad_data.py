"""Bad data through the CLI: a checksum mismatch, a truncated download, an interrupted one, a
truncated or foreign archive, an archive member escaping its folder, files of the wrong
format. Each is one line and exit 2 and leaves nothing a later run would trust; a good
archive then works."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import signal
import subprocess
import tarfile
import time

import numpy as np
import pytest

from sgdwalk.cli import main

from .conftest import cli, one_line_error, run_cli, sets, tree

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer

ARCHIVE = "cifar-10-binary.tar.gz"
FOLDER = "cifar-10-batches-bin"
FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)
TRAIN = ["data.name=cifar10", "data.probe_size=16", "data.probe_batch=16", "data.augment=false",
         "model.widths=[8]", "optim.batch_size=30", "train.max_steps=2", "train.progress=false"]


def _member(name: str, kind=tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def _tar_gz(entries) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in entries:
            if data is None:
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _archive(files: dict[str, bytes], extra=()) -> bytes:
    """A .tar.gz laid out like the official CIFAR-10 binary archive, plus `extra` members."""
    entries = [(_member(FOLDER, tarfile.DIRTYPE), None)]
    entries += [(_member(f"{FOLDER}/{name}"), data) for name, data in files.items()]
    return _tar_gz([*entries, *extra])


def _good_files(per_file: int = 20) -> dict[str, bytes]:
    out = {}
    for seed, name in enumerate(FILES):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 10, (per_file, 1), dtype=np.uint8)
        pixels = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
        out[name] = np.concatenate([labels, pixels], axis=1).tobytes()
    return out


GOOD = _archive(_good_files())


def _pass_as_official(monkeypatch, archive: bytes, per_file: int = 20) -> None:
    """Make a fixture archive pass the checks of the official one (its MD5 and record count),
    in this process: runs through `main` then extract and train on it."""
    monkeypatch.setattr("sgdwalk.data.cifar.CIFAR10_MD5", hashlib.md5(archive).hexdigest())
    monkeypatch.setattr("sgdwalk.data.cifar.RECORDS_PER_FILE", per_file)


def _train(root, *extra, **kwargs):
    return run_cli("train", "default", "--out", root.parent / "runs", "--no-progress",
                   *sets([*TRAIN, f"data.root={root}", *extra]), **kwargs)


def _download(root, base):
    return _train(root, "data.download=true", f"data.url={base}")


# ---------------------------------------------------------------------------------------
# downloads


def test_a_checksum_mismatch_is_one_line_and_leaves_nothing(http_server, tmp_path):
    http_server.serve(f"/{ARCHIVE}", GOOD)  # not the official archive: md5 differs
    base = http_server.base
    root = tmp_path / "cifar"
    proc = _download(root, base)
    got = hashlib.md5(GOOD).hexdigest()
    one_line_error(proc, f"{root / ARCHIVE}: expected md5 c32a1d4ab5d03f1284b67883e8d87530, "
                   f"got {got}")
    assert tree(root) == []  # no archive, no .part, no extracted folder
    assert not (tmp_path / "runs").exists()


def test_a_truncated_download_is_one_line_and_leaves_nothing(http_server, tmp_path):
    http_server.serve(f"/{ARCHIVE}", GOOD, kind="truncate")
    base = http_server.base
    root = tmp_path / "cifar"
    proc = _download(root, base)
    one_line_error(proc, f"expected {len(GOOD)} bytes (Content-Length), got {len(GOOD) // 2}")
    assert tree(root) == []


def test_an_http_error_is_one_line(http_server, tmp_path):
    proc = _download(tmp_path / "cifar", http_server.base)  # nothing served: 404
    one_line_error(proc, "expected HTTP status 200, got 404")
    assert tree(tmp_path / "cifar") == []


def test_an_interrupted_download_is_never_trusted_and_the_next_one_works(
        http_server, tmp_path, monkeypatch, capsys):
    http_server.serve(f"/{ARCHIVE}", GOOD, kind="stall")
    base = http_server.base
    root = tmp_path / "cifar"
    part = root / f"{ARCHIVE}.part"
    proc = subprocess.Popen(cli("train", "default", "--out", tmp_path / "runs", "--no-progress",
                                *sets([*TRAIN, f"data.root={root}", "data.download=true",
                                       f"data.url={base}"])),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not part.exists():  # the body is streaming into it (and stalls a third in)
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.02)
    time.sleep(0.2)
    assert proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)  # mid-download: no handler can clean up after this
    proc.wait()
    assert tree(root) == [f"{ARCHIVE}.part"]  # only the partial file, under its own name

    http_server.serve(f"/{ARCHIVE}", GOOD)
    _pass_as_official(monkeypatch, GOOD)
    code = main(["train", "default", "--out", str(tmp_path / "runs"), "--no-progress",
                 *sets([*TRAIN, f"data.root={root}", "data.download=true",
                        f"data.url={base}"])])
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith("completed: 2 steps")
    assert (root / ARCHIVE).read_bytes() == GOOD  # downloaded afresh, whole
    assert sorted(os.listdir(root)) == sorted([ARCHIVE, FOLDER])  # the .part is gone


def test_a_hostile_archive_that_passes_its_checksum_extracts_nothing(
        http_server, tmp_path, monkeypatch, capsys):
    """A mirror serves an archive with a member escaping the folder, and its checksum is
    the one configured: the download is kept (it is what was asked for), nothing of it is
    extracted, and every later run refuses it the same way."""
    hostile = _archive(_good_files(), [(_member("../../evil.txt"), b"pwned")])
    http_server.serve(f"/{ARCHIVE}", hostile)
    base = http_server.base
    monkeypatch.setattr("sgdwalk.data.cifar.CIFAR10_MD5", hashlib.md5(hostile).hexdigest())
    root = tmp_path / "box" / "cifar"
    for _ in range(2):
        code = main(["train", "default", "--out", str(tmp_path / "runs"), "--no-progress",
                     *sets([*TRAIN, f"data.root={root}", "data.download=true",
                            f"data.url={base}"])])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert "got member '../../evil.txt' with a '..' component (nothing was extracted)" in (
            err[0])
        assert tree(root) == [ARCHIVE]
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "box" / "evil.txt").exists()


# ---------------------------------------------------------------------------------------
# archives and files already on disk


HOSTILE = {
    "parent": (_member("../evil.txt"), b"x", "with a '..' component"),
    "absolute": (_member("/tmp/sgdwalk-evil.txt"), b"x", "with an absolute path"),
    "symlink": (_member(f"{FOLDER}/link", tarfile.SYMTYPE, "/etc/passwd"), None,
                "with a link to '/etc/passwd'"),
    "hardlink": (_member(f"{FOLDER}/hard", tarfile.LNKTYPE, "/etc/passwd"), None,
                 "with a link to '/etc/passwd'"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_archive_on_disk_is_refused_and_nothing_is_extracted(tmp_path, case):
    info, data, problem = HOSTILE[case]
    root = tmp_path / "box" / "cifar"
    root.mkdir(parents=True)
    (root / ARCHIVE).write_bytes(_archive(_good_files(), [(info, data)]))
    one_line_error(_train(root), f"got member {info.name!r} {problem}")
    assert tree(tmp_path / "box") == ["cifar", f"cifar/{ARCHIVE}"]
    assert not os.path.lexists("/tmp/sgdwalk-evil.txt")


@pytest.mark.parametrize("content, message", [
    (GOOD[: len(GOOD) // 2], "expected a complete tar archive"),
    (b"<html>404 Not Found</html>\n" * 50, "expected a complete tar archive"),
    (b"", "expected a complete tar archive"),
])
def test_a_truncated_or_foreign_archive_is_refused_and_nothing_is_extracted(tmp_path, content,
                                                                            message, capsys,
                                                                            monkeypatch):
    root = tmp_path / "cifar"
    root.mkdir()
    (root / ARCHIVE).write_bytes(content)
    one_line_error(_train(root), message)
    assert tree(root) == [ARCHIVE]
    (root / ARCHIVE).write_bytes(GOOD)  # the good archive, in the same place, then works
    _pass_as_official(monkeypatch, GOOD)
    code = main(["train", "default", "--out", str(tmp_path / "runs"), "--no-progress",
                 *sets([*TRAIN, f"data.root={root}"])])
    assert code == 0 and capsys.readouterr().out.startswith("completed: 2 steps")


def test_batch_files_of_the_wrong_format_are_refused_on_every_run(tmp_path):
    files = _good_files()
    files["data_batch_3.bin"] = files["data_batch_3.bin"][:-100]  # not whole records
    root = tmp_path / "cifar"
    root.mkdir()
    (root / ARCHIVE).write_bytes(_archive(files))
    for _ in range(2):  # refused before extraction, and again by the next run
        one_line_error(_train(root), "data_batch_3.bin: expected a CIFAR-10 binary file of "
                       "whole 3073-byte records, got 61360 bytes")
    assert not (tmp_path / "runs").exists()


def test_the_pickled_python_version_of_cifar10_is_never_read(tmp_path):
    root = tmp_path / "cifar"
    (root / "cifar-10-batches-py").mkdir(parents=True)
    marker = tmp_path / "unpickled"
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(
        b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    one_line_error(_train(root), "only the binary version is read")
    assert not marker.exists()


def test_mnist_files_of_the_wrong_format_are_one_line(tmp_path):
    root = tmp_path / "mnist"
    root.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (root / name).write_bytes(b"\x89PNG\r\n\x1a\n not an idx file")
    proc = run_cli("train", "default", "--out", tmp_path / "runs",
                   *sets(["data.name=mnist", f"data.root={root}", "train.max_steps=1"]))
    one_line_error(proc, "train-images-idx3-ubyte: expected an IDX magic number")


# ---------------------------------------------------------------------------------------
# hostile files and sizes: declared sizes are checked before anything is read or written


def _main_error(capsys, *args) -> str:
    """Run `sgdwalk ARGS` in this process; assert exit 2 and one stderr line; return it."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, (code, err)
    assert err[0].startswith("sgdwalk: error: ") and "Traceback" not in err[0]
    return err[0]


def _train_args(tmp_path, *overrides):
    return ["train", "default", "--out", tmp_path / "runs", "--no-progress",
            *sets([*TRAIN, *overrides])]


def _mnist_folder(folder, labels_of_train=None):
    """The four raw MNIST files (60 train, 20 test images)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(_idx(images))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx(labels))
    return folder


def _idx(array) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes() + (
        array.tobytes())


MNIST = ["data.name=mnist", "data.probe_size=16", "data.probe_batch=16", "model.widths=[8]",
         "optim.batch_size=10", "train.max_steps=2", "train.progress=false"]


def test_a_gzip_bomb_in_place_of_an_idx_file_is_one_line_and_never_expanded(tmp_path, capsys):
    """A 65 KB gzip holding 60 images' header and 64 MB behind them: the first version
    expanded all of it (4.4 GB for a 2 MB file in the reported case) before refusing it."""
    root = _mnist_folder(tmp_path / "mnist")
    images = root / "train-images-idx3-ubyte"
    head = images.read_bytes()
    images.unlink()
    with gzip.open(root / "train-images-idx3-ubyte.gz", "wb", compresslevel=9) as f:
        f.write(head)
        for _ in range(64):
            f.write(bytes(1 << 20))
    line = _main_error(capsys, "train", "default", "--out", tmp_path / "runs",
                       *sets([*MNIST, f"data.root={root}"]))
    assert line.endswith("train-images-idx3-ubyte.gz: expected 47040 data bytes for shape "
                         "(60, 28, 28) of uint8, got more (the stream goes on past them)")


def test_an_idx_header_whose_sizes_overflow_int64_is_one_line(tmp_path, capsys):
    root = _mnist_folder(tmp_path / "mnist")
    (root / "train-labels-idx1-ubyte").write_bytes(
        bytes([0, 0, 0x08, 4]) + np.full(4, 65536, ">u4").tobytes())
    line = _main_error(capsys, "train", "default", "--out", tmp_path / "runs",
                       *sets([*MNIST, f"data.root={root}"]))
    assert "train-labels-idx1-ubyte: expected at most 4294967296 bytes of data, got a header " \
           "declaring shape (65536, 65536, 65536, 65536) of uint8" in line


def test_a_small_archive_that_would_expand_past_the_official_size_is_refused_on_every_run(
        tmp_path, monkeypatch, capsys):
    """One 16 MB batch file of zeros and none of the other five: the first version moved it
    into place, failed, and every later run then said "got them already there"."""
    bomb = _archive({"data_batch_1.bin": bytes(16 << 20)})
    assert len(bomb) < 100_000
    root = tmp_path / "cifar"
    root.mkdir()
    (root / ARCHIVE).write_bytes(bomb)
    _pass_as_official(monkeypatch, bomb)
    for _ in range(2):
        line = _main_error(capsys, *_train_args(tmp_path, f"data.root={root}"))
        assert "bytes once extracted, got members declaring more, the last " \
               f"'{FOLDER}/data_batch_1.bin' of {16 << 20} bytes (nothing was extracted)" in line
        assert tree(root) == [ARCHIVE]


def test_a_local_archive_is_checked_against_the_official_checksum(tmp_path, monkeypatch,
                                                                   capsys):
    """The first version trusted any archive on disk (downloads alone were checked)."""
    root = tmp_path / "cifar"
    root.mkdir()
    (root / ARCHIVE).write_bytes(GOOD)
    monkeypatch.setattr("sgdwalk.data.cifar.RECORDS_PER_FILE", 20)  # the sizes pass
    line = _main_error(capsys, *_train_args(tmp_path, f"data.root={root}"))
    assert line.endswith(f"{root / ARCHIVE}: expected md5 c32a1d4ab5d03f1284b67883e8d87530, "
                         f"got {hashlib.md5(GOOD).hexdigest()}")
    assert tree(root) == [ARCHIVE] and not (tmp_path / "runs").exists()


def test_a_symlink_planted_at_the_partial_download_is_refused_and_its_target_kept(
        http_server, tmp_path, capsys):
    http_server.serve(f"/{ARCHIVE}", GOOD)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    root = tmp_path / "cifar"
    root.mkdir()
    (root / f"{ARCHIVE}.part").symlink_to(victim)
    line = _main_error(capsys, *_train_args(tmp_path, f"data.root={root}",
                                            "data.download=true", f"data.url={http_server.base}"))
    assert f"{ARCHIVE}.part: expected no file or a regular file where the download is " \
           f"written, got a symbolic link to {str(victim)!r}" in line
    assert victim.read_text() == "precious" and tree(root) == [f"{ARCHIVE}.part"]


@pytest.mark.parametrize("state", ["absent", "partial", "truncated"])
def test_a_missing_or_broken_fashion_mnist_copy_is_one_line(tmp_path, monkeypatch, capsys,
                                                            state):
    """Debian's dataset-fashion-mnist puts the four .gz files in /usr/share/datasets/
    fashion-mnist; without it (or with a damaged copy) training says so in one line."""
    system = tmp_path / "usr-share-datasets-fashion-mnist"
    monkeypatch.setattr("sgdwalk.data.mnist.FASHION_MNIST_SYSTEM", str(system))
    monkeypatch.setenv("SGDWALK_DATA", str(tmp_path / "cache"))
    if state != "absent":
        _mnist_folder(system)
        for path in system.iterdir():  # the package ships .gz files
            path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
            path.unlink()
        gz = system / "train-images-idx3-ubyte.gz"
        if state == "partial":
            (system / "t10k-labels-idx1-ubyte.gz").unlink()
        else:
            gz.write_bytes(gz.read_bytes()[:-100])
    line = _main_error(capsys, "train", "fashion-mlp", "--out", tmp_path / "runs",
                       *sets(["train.max_steps=1", "train.progress=false"]))
    expected = {
        "absent": f"no folder {system}; no folder {tmp_path / 'cache' / 'fashion_mnist'} (to "
                  f"get them: apt-get install dataset-fashion-mnist, set data.root=FOLDER, or "
                  f"data.download=true)",
        "partial": f"{system} lacking t10k-labels-idx1-ubyte; no folder",
        "truncated": f"{system / 'train-images-idx3-ubyte.gz'}: expected a complete gzip "
                     f"stream, got",
    }[state]
    assert expected in line
