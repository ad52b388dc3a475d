"""SIGKILL a training run at random points, resume each time, and get the uninterrupted run."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from sgdwalk.config import load_config
from sgdwalk.runs import run_dir_name
from sgdwalk.store import RunStore, read_run
from sgdwalk.train import train

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

    got, want = read_run(run_dir).sort_index(), read_run(reference.run_dir).sort_index()
    assert got.equals(want)
    with RunStore.open(run_dir) as a, RunStore.open(reference.run_dir) as b:
        assert a.names() == b.names()
        for name in b.names()["vectors"]:
            assert a.vectors(name).equals(b.vectors(name)), name
        step_a, state_a = a.latest_checkpoint()
        step_b, state_b = b.latest_checkpoint()
    assert step_a == step_b == total
    for key, value in state_b["model"].items():
        assert torch.equal(state_a["model"][key], value), key


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
