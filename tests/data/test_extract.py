"""safe_extract: hostile or broken archives extract nothing; good ones appear atomically."""

from __future__ import annotations

import tarfile

import pytest

from sgdwalk.data import safe_extract
from sgdwalk.errors import DataError


def tree(folder):
    """Every path under `folder`, relative, as sorted strings."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_extracts_into_a_new_target_with_no_staging_left(formats, tmp_path):
    data, files = formats.cifar_archive(per_file=2)
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(data)
    safe_extract(archive, tmp_path / "out")
    assert tree(tmp_path / "out") == sorted(
        ["cifar-10-batches-bin", "cifar-10-batches-bin/batches.meta.txt"]
        + [f"cifar-10-batches-bin/{name}" for name in files]
    )
    for name, (content, _, _) in files.items():
        assert (tmp_path / "out" / "cifar-10-batches-bin" / name).read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "out"]


def test_extracts_next_to_the_archive_inside_an_existing_target(formats, tmp_path):
    data, _ = formats.cifar_archive(per_file=1)
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(data)
    safe_extract(archive, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "cifar-10-batches-bin"]
    assert len(list((tmp_path / "cifar-10-batches-bin").iterdir())) == 7


def test_an_existing_entry_is_never_overwritten(formats, tmp_path):
    data, _ = formats.cifar_archive(per_file=1)
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(data)
    (tmp_path / "cifar-10-batches-bin").mkdir()
    (tmp_path / "cifar-10-batches-bin" / "mine.txt").write_text("keep")
    with pytest.raises(DataError, match="expected no existing cifar-10-batches-bin"):
        safe_extract(archive, tmp_path)
    assert tree(tmp_path) == ["a.tar.gz", "cifar-10-batches-bin", "cifar-10-batches-bin/mine.txt"]


HOSTILE = {
    "parent": ("../evil", tarfile.REGTYPE, ""),
    "nested parent": ("ok/../../evil", tarfile.REGTYPE, ""),
    "absolute": ("/tmp/sgdwalk-test-evil", tarfile.REGTYPE, ""),
    "symlink out": ("ok/link", tarfile.SYMTYPE, "../../evil"),
    "symlink absolute": ("ok/link", tarfile.SYMTYPE, "/etc/passwd"),
    "symlink inside": ("ok/link", tarfile.SYMTYPE, "file.txt"),
    "hardlink": ("ok/hard", tarfile.LNKTYPE, "ok/file.txt"),
    "fifo": ("ok/fifo", tarfile.FIFOTYPE, ""),
    "char device": ("ok/null", tarfile.CHRTYPE, ""),
    "block device": ("ok/disk", tarfile.BLKTYPE, ""),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_member_is_refused_and_nothing_is_extracted(formats, tmp_path, case):
    name, kind, linkname = HOSTILE[case]
    payload = b"evil" if kind == tarfile.REGTYPE else None
    data = formats.tar_gz(
        [
            (formats.member("ok", tarfile.DIRTYPE), None),
            (formats.member("ok/file.txt"), b"benign, comes first"),
            (formats.member(name, kind, linkname), payload),
        ]
    )
    box = tmp_path / "box"  # archive and target live here; "../evil" would land in tmp_path
    box.mkdir()
    archive = box / "a.tar.gz"
    archive.write_bytes(data)
    with pytest.raises(DataError, match=f"got member '{name}' with"):
        safe_extract(archive, box / "out")
    assert tree(tmp_path) == ["box", "box/a.tar.gz"]  # no target, no staging, no evil


def test_truncated_archive_is_a_data_error_with_nothing_left(formats, tmp_path):
    data, _ = formats.cifar_archive(per_file=3)
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="expected a complete tar archive"):
        safe_extract(archive, tmp_path / "out")
    assert tree(tmp_path) == ["a.tar.gz"]


@pytest.mark.parametrize(
    "content", [b"", b"this is not an archive\n" * 40, b"\x1f\x8b\x08\x00garbage"]
)
def test_non_archive_is_a_data_error(tmp_path, content):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(content)
    with pytest.raises(DataError, match="expected a complete tar archive"):
        safe_extract(archive, tmp_path / "out")
    assert tree(tmp_path) == ["a.tar.gz"]


def test_missing_archive_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="expected a complete tar archive"):
        safe_extract(tmp_path / "nope.tar.gz", tmp_path / "out")
    assert tree(tmp_path) == []


def test_target_that_is_a_file_is_refused(formats, tmp_path):
    data, _ = formats.cifar_archive(per_file=1)
    (tmp_path / "a.tar.gz").write_bytes(data)
    (tmp_path / "out").write_text("a file")
    with pytest.raises(DataError, match="expected a folder to extract into, got a file"):
        safe_extract(tmp_path / "a.tar.gz", tmp_path / "out")


# ---------------------------------------------------------------------------------------
# limits: decided from the headers, before anything is written


def small_archive(formats, sizes: dict[str, int]) -> bytes:
    return formats.tar_gz([(formats.member(name), bytes(size)) for name, size in sizes.items()])


@pytest.mark.parametrize("max_bytes, ok", [(300, True), (299, False)])
def test_the_declared_bytes_are_capped(formats, tmp_path, max_bytes, ok):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(small_archive(formats, {"a": 100, "b": 200}))
    if ok:
        safe_extract(archive, tmp_path / "out", max_bytes=max_bytes)
        assert tree(tmp_path / "out") == ["a", "b"]
        return
    with pytest.raises(DataError, match="expected at most 299 bytes once extracted, got "
                                        "members declaring more, the last 'b' of 200 bytes"):
        safe_extract(archive, tmp_path / "out", max_bytes=max_bytes)
    assert tree(tmp_path) == ["a.tar.gz"]


@pytest.mark.parametrize("max_members, ok", [(3, True), (2, False)])
def test_the_member_count_is_capped(formats, tmp_path, max_members, ok):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(small_archive(formats, {"a": 1, "b": 1, "c": 1}))
    if ok:
        safe_extract(archive, tmp_path / "out", max_members=max_members)
        assert tree(tmp_path / "out") == ["a", "b", "c"]
        return
    with pytest.raises(DataError, match="expected at most 2 members, got more"):
        safe_extract(archive, tmp_path / "out", max_members=max_members)
    assert tree(tmp_path) == ["a.tar.gz"]


def test_the_global_ceilings_apply_by_default(formats, tmp_path, monkeypatch):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(small_archive(formats, {"a": 10, "b": 10}))
    monkeypatch.setattr("sgdwalk.data.limits.MAX_DATA_BYTES", 19)
    with pytest.raises(DataError, match="expected at most 19 bytes once extracted"):
        safe_extract(archive, tmp_path / "out")
    monkeypatch.setattr("sgdwalk.data.limits.MAX_DATA_BYTES", 20)
    monkeypatch.setattr("sgdwalk.data.limits.MAX_ARCHIVE_MEMBERS", 1)
    with pytest.raises(DataError, match="expected at most 1 members"):
        safe_extract(archive, tmp_path / "out")
    assert tree(tmp_path) == ["a.tar.gz"]


def test_check_sees_every_file_and_its_size_before_anything_is_written(formats, tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(formats.tar_gz([(formats.member("d", tarfile.DIRTYPE), None),
                                        (formats.member("d/x"), b"12345"),
                                        (formats.member("y"), b"")]))
    seen = []

    def refuse(sizes):
        seen.append((sizes, tree(tmp_path)))
        raise DataError("refused by the check")

    with pytest.raises(DataError, match="refused by the check"):
        safe_extract(archive, tmp_path / "out", check=refuse)
    assert seen[0][0] == {"d/x": 5, "y": 0}  # regular files only, with declared sizes
    staging = [p for p in seen[0][1] if p.startswith(".out.extract-")]
    assert len(staging) == 1 and "/" not in staging[0]  # an empty staging folder, nothing else
    assert sorted(set(seen[0][1]) - set(staging)) == ["a.tar.gz"]
    assert tree(tmp_path) == ["a.tar.gz"]
    safe_extract(archive, tmp_path / "out", check=seen.append)
    assert tree(tmp_path / "out") == ["d", "d/x", "y"]
