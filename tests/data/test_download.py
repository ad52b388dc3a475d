"""fetch: checksummed, atomic downloads from a local HTTP server."""

from __future__ import annotations

import hashlib
import urllib.request

import pytest

from sgdwalk.data import fetch
from sgdwalk.errors import DataError

BODY = bytes(range(256)) * 4000  # 1,024,000 bytes
MD5 = hashlib.md5(BODY).hexdigest()
SHA256 = hashlib.sha256(BODY).hexdigest()


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_fetch_writes_the_verified_file_and_nothing_else(http_server, tmp_path):
    url = http_server.serve("/f.bin", BODY)
    dest = tmp_path / "dl" / "f.bin"
    assert fetch(url, dest, md5=MD5, sha256=SHA256.upper()) == dest
    assert dest.read_bytes() == BODY
    assert leftovers(dest.parent) == ["f.bin"]


def test_fetch_streams_bodies_larger_than_one_chunk(http_server, tmp_path, monkeypatch):
    monkeypatch.setattr("sgdwalk.data.download.CHUNK_BYTES", 1000)
    url = http_server.serve("/f.bin", BODY)
    dest = fetch(url, tmp_path / "f.bin", sha256=SHA256)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == SHA256


@pytest.mark.parametrize("kind", ["md5", "sha256"])
def test_checksum_mismatch_removes_the_file_and_keeps_an_older_copy(http_server, tmp_path, kind):
    url = http_server.serve("/f.bin", BODY)
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"older copy")
    wrong = "0" * (32 if kind == "md5" else 64)
    got = MD5 if kind == "md5" else SHA256
    with pytest.raises(DataError) as info:
        fetch(url, dest, **{kind: wrong})
    assert str(info.value) == f"{dest}: expected {kind} {wrong}, got {got}"
    assert dest.read_bytes() == b"older copy"
    assert leftovers(tmp_path) == ["f.bin"]


def test_truncated_body_is_an_error_and_leaves_nothing(http_server, tmp_path):
    url = http_server.serve("/f.bin", BODY, kind="truncate")
    with pytest.raises(DataError, match=f"expected {len(BODY)} bytes .*, got {len(BODY) // 2}"):
        fetch(url, tmp_path / "f.bin")  # no checksum: the length check alone catches it
    assert leftovers(tmp_path) == []


def test_http_error_is_a_data_error(http_server, tmp_path):
    with pytest.raises(DataError, match="expected HTTP status 200, got 404"):
        fetch(http_server.base + "/missing.bin", tmp_path / "f.bin")
    assert leftovers(tmp_path) == []


def test_refused_connection_is_a_data_error(http_server, tmp_path):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match="expected a complete download"):
        fetch(f"http://127.0.0.1:{port}/f.bin", tmp_path / "f.bin")
    assert leftovers(tmp_path) == []


def test_interrupted_download_deletes_the_partial_file(tmp_path, monkeypatch):
    seen = []

    class Response:  # yields one chunk, then the user presses Ctrl-C
        headers = {"Content-Length": "2000"}

        def read(self, n):
            seen.append(sorted(p.name for p in tmp_path.iterdir()))
            if len(seen) == 1:
                return b"x" * 1000
            raise KeyboardInterrupt

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response())
    with pytest.raises(KeyboardInterrupt):
        fetch("http://127.0.0.1:9/f.bin", tmp_path / "f.bin", md5=MD5)
    assert seen[1] == ["f.bin.part"]  # the partial file existed mid-download...
    assert leftovers(tmp_path) == []  # ...and is gone afterwards


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/f.bin", "f.bin"])
def test_only_http_and_https_are_fetched(tmp_path, url):
    with pytest.raises(DataError, match="expected an http:// or https:// address"):
        fetch(url, tmp_path / "f.bin")
    assert leftovers(tmp_path) == []


def test_progress_bar_goes_to_stderr(http_server, tmp_path, capsys):
    url = http_server.serve("/f.bin", BODY)
    fetch(url, tmp_path / "f.bin", md5=MD5, progress=True)
    captured = capsys.readouterr()
    assert "f.bin" in captured.err and captured.out == ""


@pytest.mark.parametrize("target_exists", [True, False], ids=["to a file", "dangling"])
def test_a_symlink_planted_at_the_partial_path_is_refused_never_followed(
        http_server, tmp_path, target_exists):
    """The first version opened `<dest>.part` with open(..., "wb"): it followed the link and
    overwrote (or created) the file it points at."""
    url = http_server.serve("/f.bin", BODY)
    victim = tmp_path / "elsewhere" / "victim.txt"
    victim.parent.mkdir()
    if target_exists:
        victim.write_bytes(b"precious")
    box = tmp_path / "dl"
    box.mkdir()
    (box / "f.bin.part").symlink_to(victim)
    with pytest.raises(DataError) as info:
        fetch(url, box / "f.bin", md5=MD5)
    assert str(info.value) == (
        f"{box / 'f.bin.part'}: expected no file or a regular file where the download is "
        f"written, got a symbolic link to {str(victim)!r} (remove it to download)")
    assert victim.read_bytes() == b"precious" if target_exists else not victim.exists()
    assert leftovers(box) == ["f.bin.part"] and (box / "f.bin.part").is_symlink()


def test_a_stale_partial_file_of_a_killed_run_is_replaced(http_server, tmp_path):
    url = http_server.serve("/f.bin", BODY)
    (tmp_path / "f.bin.part").write_bytes(b"half of an older download" * 100_000)
    assert fetch(url, tmp_path / "f.bin", md5=MD5).read_bytes() == BODY
    assert leftovers(tmp_path) == ["f.bin"]


def test_a_folder_at_the_partial_path_is_one_line(http_server, tmp_path):
    url = http_server.serve("/f.bin", BODY)
    (tmp_path / "f.bin.part").mkdir()
    with pytest.raises(DataError, match="f.bin.part: expected a new file to download into, "
                                        "got a folder"):
        fetch(url, tmp_path / "f.bin")
    assert leftovers(tmp_path) == ["f.bin.part"]


def test_a_link_planted_between_the_check_and_the_open_is_not_followed(
        http_server, tmp_path, monkeypatch):
    """The race the check cannot see: the link appears after it (simulated by a check that
    sees nothing and an unlink that removes nothing). O_CREAT | O_EXCL refuses it."""
    import pathlib

    url = http_server.serve("/f.bin", BODY)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    (tmp_path / "f.bin.part").symlink_to(victim)
    monkeypatch.setattr(pathlib.Path, "is_symlink", lambda self: False)
    monkeypatch.setattr(pathlib.Path, "unlink", lambda self, missing_ok=False: None)
    with pytest.raises(DataError, match="f.bin.part: expected a new file to download into, "
                                        "got a file planted there meanwhile"):
        fetch(url, tmp_path / "f.bin", md5=MD5)
    assert victim.read_bytes() == b"precious"
