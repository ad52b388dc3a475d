"""Readers watch a run while it is written: a consistent committed prefix, never blocking."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from sgdwalk.store import RunStore

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer

NAMES = [f"m{j}" for j in range(8)]


def _value(step: int, j: int) -> float:
    return step * 10.0 + j


def _assert_prefix(table, vectors) -> int:
    """Every committed step is whole: all names, the right values, steps 0..n-1."""
    n = len(table)
    assert table.index.tolist() == list(range(n))
    if n:
        assert list(table.columns) == NAMES
        expected = np.array([[_value(s, j) for j in range(8)] for s in range(n)])
        np.testing.assert_array_equal(table.to_numpy(), expected)
    assert vectors.index.tolist() == list(range(n))  # same prefix in the other table
    return n


def test_reader_sees_only_committed_rows_while_a_write_is_open(make_run):
    store = make_run()
    for step in range(10):
        store.log(step, {name: _value(step, j) for j, name in enumerate(NAMES)} | {"v": [step]})
    store.flush()
    reader = RunStore.open(store.path)
    con = store._db.con  # hold a write transaction open half-way through a batch
    con.execute("BEGIN IMMEDIATE")
    con.executemany("INSERT INTO scalars VALUES (?, ?, ?)", [(10, name, 0.0) for name in NAMES[:3]])
    assert _assert_prefix(reader.scalars(), reader.vectors("v")) == 10  # not blocked, no partial
    con.execute("ROLLBACK")
    store.log(10, {name: _value(10, j) for j, name in enumerate(NAMES)} | {"v": [10]})
    store.flush()
    assert _assert_prefix(reader.scalars(), reader.vectors("v")) == 11  # sees new commits
    reader.close()


def test_a_long_read_does_not_block_the_writer(make_run):
    store = make_run()
    for step in range(500):
        store.log(step, {"a": 1.0})
    store.flush()
    with RunStore.open(store.path) as reader:
        cursor = reader._db.con.execute("SELECT * FROM scalars")  # an open read snapshot
        cursor.fetchone()
        for step in range(500, 600):
            store.log(step, {"a": 2.0})
        store.flush()  # commits while the reader's snapshot is open
        assert len(cursor.fetchall()) == 499  # the snapshot did not move
        assert len(reader.scalars()) == 600  # a new read sees the new commit


def test_concurrent_thread_reader_sees_consistent_prefixes(make_run):
    store = make_run()
    done = threading.Event()
    errors = []

    def write():
        try:
            for step in range(400):
                row = {name: _value(step, j) for j, name in enumerate(NAMES)}
                store.log(step, row | {"v": np.array([step], np.float32)})
                if step % 7 == 6:  # commits cut through the run at odd places
                    store.flush()
                    time.sleep(0.002)  # let the reader in between commits
            store.flush()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    reader = RunStore.open(store.path)
    thread = threading.Thread(target=write)
    thread.start()
    seen = set()
    while not done.is_set():
        names = reader.names()
        table = reader.scalars()
        seen.add(_assert_prefix(table, reader.vectors("v").loc[: len(table) - 1]))
        assert names["scalars"] in ([], NAMES)
    thread.join()
    assert not errors
    assert _assert_prefix(reader.scalars(), reader.vectors("v")) == 400
    reader.close()
    assert seen <= {0, 400} | {k for k in range(7, 400, 7)}  # only whole commits were seen
    assert len(seen - {0, 400}) >= 1  # and it did read while the run was being written


def test_reader_in_another_process_while_writing(make_run):
    store = make_run()
    for step in range(50):
        store.log(step, {name: _value(step, j) for j, name in enumerate(NAMES)} | {"v": [step]})
    store.flush()
    script = textwrap.dedent(f"""
        from sgdwalk.store import RunStore
        with RunStore.open({str(store.path)!r}) as r:
            t = r.scalars()
            print(len(t), int(t.notna().all().all()), len(r.vectors("v")))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["50", "1", "50"]
    store.log(50, {"m0": 1.0})  # the writer is still working after the reader left
    store.flush()
