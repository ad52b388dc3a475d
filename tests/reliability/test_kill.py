"""SIGKILL a training run at random points, resume each time, and get the uninterrupted run:
the same rows, vectors, final meta and checkpoints, bit for bit on CPU."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from sgdwalk.config import load_config
from sgdwalk.experiment import train
from sgdwalk.store import RunStore
from sgdwalk.store.identity import run_dir_name

from .conftest import kill_when, last_step, same_run, sets, tmp_files

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer

OVERRIDES = [
    "data.probe_size=64", "data.probe_batch=32", "model.widths=[32]", "optim.batch_size=16",
    "train.epochs=4", "train.checkpoint_every=7", "train.flush_every=5",
    "train.progress=false", "walk.preset=full", "walk.sharpness=every:25",
    "walk.barrier_ks=[1,3]", "walk.line_points=7",
]


def _steps_logged(run_dir) -> int:
    try:
        with RunStore.open(run_dir) as store:
            table = store.scalars(["loss"])
    except Exception:  # the store may not exist yet
        return -1
    return int(table.index.max()) if len(table) else -1


def _kill_when(cmd, run_dir, target_step, timeout=120):
    """Start `cmd`, SIGKILL it once the store shows `target_step`; True if it was killed."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if _steps_logged(run_dir) >= target_step:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.02)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _cli(*args):
    return [sys.executable, "-m", "sgdwalk.cli", *args]


def test_sigkill_at_random_points_then_resume_equals_uninterrupted(tmp_path):
    config = load_config("default", OVERRIDES)
    reference = train(config, tmp_path / "ref")
    total = reference.steps
    run_dir = tmp_path / "killed" / run_dir_name(config)
    sets = [a for o in OVERRIDES for a in ("--set", o)]
    rng = random.Random(20181)
    targets = sorted(rng.sample(range(3, total - 3), 5))
    kills = 0
    for i, target in enumerate(targets):
        cmd = (_cli("train", "default", "--out", str(tmp_path / "killed"), *sets)
               if i == 0 else _cli("resume", str(run_dir)))
        kills += _kill_when(cmd, run_dir, target)
    assert kills >= 3, f"only {kills} of {len(targets)} kills landed before the run ended"
    done = subprocess.run(_cli("resume", str(run_dir)), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    with RunStore.open(run_dir) as a:
        assert a.latest_checkpoint()[0] == total
    same_run(run_dir, reference.run_dir)  # rows, vectors, final meta, checkpoints bit for bit


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_checkpoint_and_exit_130(tmp_path, sig):
    config = load_config("default", OVERRIDES)
    run_dir = tmp_path / run_dir_name(config)
    sets = [a for o in OVERRIDES for a in ("--set", o)]
    proc = subprocess.Popen(_cli("train", "default", "--out", str(tmp_path), *sets),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while _steps_logged(run_dir) < 10 and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "resume with: sgdwalk resume" in out
    with RunStore.open(run_dir) as store:
        assert store.meta()["status"] == "stopped"
        step, _ = store.latest_checkpoint()
    assert step >= 10


# ---------------------------------------------------------------------------------------
# slow: many seeded kill points, and kills that land inside checkpoint and flush writes


MANY_KILLS = 20  # step-timed kill points of the slow test (seeded random)
WRITE_KILLS = 16  # time-jittered kill points with a checkpoint and a commit at every step


def _kill_and_resume(config_args, run_dir, targets, jitter, rng):
    """Kill `sgdwalk train CONFIG_ARGS` (then `resume`) once the store shows each target
    step, `jitter` seconds later at most; check the run is loadable after every kill.
    Returns (kills that landed, kills that left a half-written file behind)."""
    kills = mid_write = 0
    for i, target in enumerate(targets):
        cmd = _cli("train", *config_args) if i == 0 else _cli("resume", str(run_dir))

        def ready(target=target):
            if last_step(run_dir) < target:
                return False
            time.sleep(rng.uniform(0, jitter))
            return True

        landed = kill_when(cmd, ready)
        kills += landed
        if not landed:
            continue
        mid_write += bool(tmp_files(run_dir))
        with RunStore.open(run_dir) as store:  # loadable after every kill
            assert store.meta()["status"] in ("created", "running")
            store.scalars()
            found = store.latest_checkpoint()
        assert found is None or found[0] <= last_step(run_dir) + 1
    return kills, mid_write


@pytest.mark.slow
def test_sigkill_at_many_seeded_points_then_resume_equals_uninterrupted(tmp_path):
    overrides = [*OVERRIDES, "train.keep_checkpoints=1000"]
    config = load_config("default", overrides)
    reference = train(config, tmp_path / "ref")
    run_dir = tmp_path / "killed" / run_dir_name(config)
    rng = random.Random(7919)
    targets = sorted(rng.sample(range(2, reference.steps - 2), MANY_KILLS))
    kills, _ = _kill_and_resume(["default", "--out", str(tmp_path / "killed"),
                                 *sets(overrides)], run_dir, targets, 0.0, rng)
    assert kills >= MANY_KILLS - 3, f"only {kills} of {MANY_KILLS} kills landed"
    done = subprocess.run(_cli("resume", str(run_dir)), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    same_run(run_dir, reference.run_dir)


@pytest.mark.slow
def test_sigkill_inside_checkpoint_and_flush_writes_then_resume_equals_uninterrupted(
        tmp_path):
    """checkpoint_every=1 and flush_every=1: most of a step's time is spent writing, so
    kills jittered within a step land inside a checkpoint write or a commit."""
    overrides = [*OVERRIDES, "train.epochs=2", "train.checkpoint_every=1",
                 "train.flush_every=1", "train.keep_checkpoints=1000", "walk.preset=cheap"]
    config = load_config("default", overrides)
    reference = train(config, tmp_path / "ref")
    run_dir = tmp_path / "killed" / run_dir_name(config)
    rng = random.Random(104729)
    targets = sorted(rng.sample(range(1, reference.steps - 3), WRITE_KILLS))
    kills, mid_write = _kill_and_resume(["default", "--out", str(tmp_path / "killed"),
                                         *sets(overrides)], run_dir, targets, 0.03, rng)
    assert kills >= WRITE_KILLS - 3, f"only {kills} of {WRITE_KILLS} kills landed"
    print(f"{kills} kills, {mid_write} inside a checkpoint write")
    done = subprocess.run(_cli("resume", str(run_dir)), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    same_run(run_dir, reference.run_dir)
