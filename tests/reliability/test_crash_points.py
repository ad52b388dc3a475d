"""SIGKILL at exact points inside the store's writes, then resume: the run must equal an
uninterrupted one. Random kills (test_kill.py) land inside writes only by chance; here a
patched store kills its own process half-way through each kind of write."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from sgdwalk.config import load_config
from sgdwalk.experiment import train
from sgdwalk.store import RunStore, read_run
from sgdwalk.store.identity import run_dir_name

from .conftest import cli, same_run, sets, tmp_files

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer

OVERRIDES = [
    "data.probe_size=64", "data.probe_batch=32", "model.widths=[32]", "optim.batch_size=64",
    "train.epochs=2", "train.checkpoint_every=3", "train.flush_every=2",
    "train.progress=false", "walk.preset=economy",
]

# Runs `sgdwalk ARGS` with one store write patched to SIGKILL the process on its AT-th call.
DRIVER = r"""
import io, os, signal, sys
import sgdwalk.store.checkpoints as ck
import sgdwalk.store.metrics as mt
import sgdwalk.store.run as rn
from sgdwalk.cli import main

point, at = sys.argv[1], int(sys.argv[2])
calls = [0]

def due():
    calls[0] += 1
    return calls[0] == at

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if point == "checkpoint-bytes":  # half a checkpoint in its temporary file
    real_save = ck._torch_save
    def save(state, f):
        if due():
            buf = io.BytesIO()
            real_save(state, buf)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            os.fsync(f.fileno())
            die()
        return real_save(state, f)  # the digest of the bytes written
    ck._torch_save = save
elif point == "checkpoint-rotate":  # the new checkpoint in place, older ones not yet deleted
    real_write = ck.write_atomic
    def write(*args, **kwargs):
        real_write(*args, **kwargs)
        if due():
            die()
    ck.write_atomic = write
elif point == "commit":  # a batch of rows inserted, its transaction not committed
    real_commit = mt.MetricDb.write
    def commit(self, scalars, vectors, info=None, durable=False):
        if due():
            self.con.execute("BEGIN IMMEDIATE")
            self.con.executemany("INSERT OR REPLACE INTO scalars VALUES (?, ?, ?)", scalars)
            die()
        return real_commit(self, scalars, vectors, info, durable)
    mt.MetricDb.write = commit
elif point == "meta":  # meta.json half written to its temporary file
    real_text = rn.write_text_atomic
    def text(path, content, where):
        if path.name == "meta.json" and due():
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            tmp.write_text(content[: len(content) // 2])
            die()
        real_text(path, content, where)
    rn.write_text_atomic = text
sys.exit(main(sys.argv[3:]))
"""

# (write, its call that is killed): two kill points per kind of write, early and late; one
# runs in the default suite, the rest are slow.
_slow = pytest.mark.slow
POINTS = [("checkpoint-bytes", 11),
          pytest.param("checkpoint-bytes", 3, marks=_slow),
          pytest.param("checkpoint-rotate", 4, marks=_slow),
          pytest.param("checkpoint-rotate", 12, marks=_slow),
          pytest.param("commit", 5, marks=_slow), pytest.param("commit", 17, marks=_slow),
          pytest.param("meta", 2, marks=_slow), pytest.param("meta", 3, marks=_slow)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    config = load_config("default", OVERRIDES)
    return config, train(config, tmp_path_factory.mktemp("ref"))


@pytest.mark.parametrize("point, at", POINTS)
def test_sigkill_inside_a_store_write_then_resume_equals_uninterrupted(tmp_path, reference,
                                                                       point, at):
    config, ref = reference
    run_dir = tmp_path / run_dir_name(config)
    crashed = subprocess.run([sys.executable, "-c", DRIVER, point, str(at), "train", "default",
                              "--out", str(tmp_path), *sets(OVERRIDES)],
                             capture_output=True, text=True, timeout=300)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    if point in ("checkpoint-bytes", "meta"):
        assert tmp_files(run_dir), "the kill should leave a half-written file"
    with RunStore.open(run_dir) as store:  # loadable: committed rows and a whole checkpoint
        rows = store.scalars()
        found = store.latest_checkpoint()
        assert store.meta()["run_id"] == run_dir.name.rsplit("-", 1)[1]
    assert found is not None and len(rows) > 0
    assert rows.index.max() < ref.steps - 1  # killed mid-run
    want = read_run(ref.run_dir)
    assert rows.equals(want.loc[rows.index, rows.columns])  # an uncommitted batch is unseen

    done = subprocess.run(cli("resume", run_dir), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"completed: {ref.steps} steps")
    same_run(run_dir, ref.run_dir)
