"""Faults: each is one StoreError line, and rows already committed stay intact."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from sgdwalk.errors import StoreError
from sgdwalk.store import RunStore

from .conftest import config_text

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message
    assert exc.value.__suppress_context__ or exc.value.__cause__ is None
    return message


_ROOT_POWERS = "--bounding-set=-dac_override,-dac_read_search,-fowner"


def _run_unprivileged(code: str) -> list[str]:
    """Run `code` in a fresh Python whose file permissions bind: as root, drop the capabilities
    that let root write into a chmod 555 folder (setpriv); return its stdout lines."""
    command = [sys.executable, "-c", textwrap.dedent(code)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: chmod cannot stop root's writes")
        command = [setpriv, _ROOT_POWERS, *command]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if os.geteuid() == 0 and out.returncode and "setpriv" in out.stderr:
        pytest.skip(f"cannot drop root's file capabilities here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_create_in_a_read_only_folder(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        lines = _run_unprivileged(f"""
            from sgdwalk.errors import StoreError
            from sgdwalk.store import RunStore
            try:
                RunStore.create({str(parent / "run")!r}, "", {{}})
            except StoreError as exc:
                print(exc)
        """)
    finally:
        parent.chmod(0o755)
    assert lines == [
        f"run {parent / 'run'}: expected a writable folder to create the run folder, got: "
        f"Permission denied ({parent / 'run'})"
    ]
    assert not (parent / "run").exists()


def test_create_when_writes_are_refused_simulated(tmp_path, monkeypatch):
    """What a read-only mount does, for any user: every file open for writing fails."""
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(StoreError) as info:
        RunStore.create(tmp_path / "run", config_text(), {})
    message = _one_line(info)
    assert message.startswith(f"run {tmp_path / 'run'}: expected a writable folder to ")
    assert "Read-only file system" in message


def test_disk_full_on_flush_keeps_earlier_rows_and_the_batch(make_run):
    store = make_run()
    for step in range(100):
        store.log(step, {"loss": float(step), "acc": 0.5})
    store.flush()
    pages = store._db.con.execute("PRAGMA page_count").fetchone()[0]
    store._db.con.execute(f"PRAGMA max_page_count={pages}")  # the disk is now full
    for step in range(100, 5000):
        store.log(step, {"loss": float(step), "a_much_longer_metric_name_to_fill_pages": 1.0})
    with pytest.raises(StoreError) as info:
        store.flush()
    message = _one_line(info)
    assert "expected free disk space to commit 9800 metric rows, got: the disk is full" in message
    with RunStore.open(store.path) as reader:  # a second connection sees only the first batch
        table = reader.scalars()
        assert table.index.tolist() == list(range(100))
        assert table["loss"].tolist() == [float(s) for s in range(100)]
    store._db.con.execute("PRAGMA max_page_count=1073741823")  # space freed: retry works
    store.flush()
    assert store.scalars().index.max() == 4999 and len(store.scalars(wide=False)) == 200 + 9800


def test_close_on_a_full_disk_still_releases_the_lock(make_run):
    store = make_run()
    store.log(0, {"a": 1.0})
    store.flush()
    pages = store._db.con.execute("PRAGMA page_count").fetchone()[0]
    store._db.con.execute(f"PRAGMA max_page_count={pages}")
    for step in range(1, 3000):
        store.log(step, {"a_long_name_that_needs_more_pages": 1.0})
    with pytest.raises(StoreError, match="the disk is full"):
        store.close()
    with RunStore.open(store.path, write=True) as again:  # not locked any more
        assert again.scalars().index.tolist() == [0]


@pytest.mark.parametrize("write", [False, True])
def test_a_corrupt_metric_store_is_refused_on_open(make_run, write):
    store = make_run()
    store.close()
    (store.path / "metrics.sqlite").write_bytes(b"this is not sqlite at all" * 100)
    for suffix in ("-wal", "-shm"):
        (store.path / f"metrics.sqlite{suffix}").unlink(missing_ok=True)
    with pytest.raises(StoreError) as info:
        RunStore.open(store.path, write=write)
    message = _one_line(info)
    assert "metrics.sqlite: expected an sqlite metric store, got a file that is not an sqlite" in (
        message
    )
    if write:  # the failed open released the lock
        with pytest.raises(StoreError, match="expected an sqlite metric store"):
            RunStore.open(store.path, write=True)


def test_an_sqlite_file_without_the_schema_is_refused(make_run):
    store = make_run()
    store.close()
    (store.path / "metrics.sqlite").unlink()
    con = sqlite3.connect(store.path / "metrics.sqlite")
    con.execute("CREATE TABLE other (x)")
    con.close()
    with pytest.raises(
        StoreError,
        match="expected an sqlite metric store, got an sqlite database without the table",
    ):
        RunStore.open(store.path)


def test_a_newer_schema_is_refused(make_run):
    store = make_run()
    store.close()
    con = sqlite3.connect(store.path / "metrics.sqlite")
    con.execute("UPDATE info SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="expected schema_version <= 1, got '99'"):
        RunStore.open(store.path)


def test_corrupt_meta_json(make_run):
    store = make_run()
    (store.path / "meta.json").write_text("{not json")
    with pytest.raises(StoreError, match="meta.json: expected a JSON object, got invalid JSON"):
        store.meta()


def test_a_second_writer_in_the_same_process_is_refused(make_run):
    store = make_run()
    with pytest.raises(StoreError) as info:
        RunStore.open(store.path, write=True)
    assert _one_line(info) == (
        f"run {store.path} is being written by another process (pid {os.getpid()})"
    )
    with RunStore.open(store.path) as reader:  # readers are never refused
        assert reader.names() == {"scalars": [], "vectors": []}
    store.close()
    RunStore.open(store.path, write=True).close()  # free again after close


def test_a_second_writer_in_another_process_is_refused(make_run):
    store = make_run()
    store.close()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys
            from sgdwalk.store import RunStore
            store = RunStore.open({str(store.path)!r}, write=True)
            print("locked", flush=True)
            sys.stdin.readline()
            store.close()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError) as info:
            RunStore.open(store.path, write=True)
        assert _one_line(info).endswith(f"is being written by another process (pid {child.pid})")
        with pytest.raises(StoreError, match="is being written by another process"):
            RunStore.create(store.path, config_text(), {}, exist_ok=True)
    finally:
        child.stdin.write("\n")
        child.stdin.close()
        assert child.wait(timeout=60) == 0
    RunStore.open(store.path, write=True).close()  # the child's exit released it


def test_opening_something_that_is_not_a_run(tmp_path):
    with pytest.raises(
        StoreError,
        match="expected a run folder with config.toml and metrics.sqlite, got no such folder",
    ):
        RunStore.open(tmp_path / "missing")
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match="got a folder holding notes.txt"):
        RunStore.open(tmp_path / "stuff")


def test_a_damaged_sqlite_file_is_refused(make_run):
    store = make_run()
    for step in range(2000):
        store.log(step, {"loss": 1.0, "acc": 2.0})
    store.close()
    data = bytearray((store.path / "metrics.sqlite").read_bytes())
    data[100:4096] = (bytes(range(256)) * 16)[: 4096 - 100]  # keep the header, wreck page 1
    (store.path / "metrics.sqlite").write_bytes(bytes(data))
    with pytest.raises(StoreError) as info:
        RunStore.open(store.path)
    assert "expected an sqlite metric store, got a damaged sqlite database" in _one_line(info)


def test_reading_a_finished_run_in_a_read_only_folder(make_run):
    store = make_run()
    store.log(0, {"a": 1.0})
    store.close()  # the last connection removes -wal and -shm
    assert sorted(p.name for p in store.path.glob("metrics.sqlite*")) == ["metrics.sqlite"]
    store.path.chmod(0o555)
    try:
        lines = _run_unprivileged(f"""
            from sgdwalk.errors import StoreError
            from sgdwalk.store import RunStore
            with RunStore.open({str(store.path)!r}) as reader:  # read as immutable
                print(reader.scalars()["a"].tolist())
            try:
                RunStore.open({str(store.path)!r}, write=True)
            except StoreError as exc:
                print(exc)
        """)
    finally:
        store.path.chmod(0o755)
    assert lines[0] == "[1.0]"
    assert lines[1].startswith(f"{store.path / 'metrics.sqlite'}: expected a writable metric store")
    assert sorted(p.name for p in store.path.glob("metrics.sqlite*")) == ["metrics.sqlite"]
