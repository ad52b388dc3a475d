"""Executors: each tells its listener of one start and one end per run; a worker process
killed mid-run fails only its own run while the others (running and queued) go on; Ctrl-C
stops a sweep with exit status 130; and in both cases the same command resumes the runs
left, with the rows of a sweep that was never stopped."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from sgdwalk import load
from sgdwalk.cli import main
from sgdwalk.store import RunStore, find_runs, read_manifest, run_progress, run_writer
from sgdwalk.studies import load_study, run_sweep
from sgdwalk.studies.executors import InProcess, LocalPool
from sgdwalk.studies.ledger import Ledger

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer


class Recorder:
    """A listener that keeps every event in order."""

    def __init__(self):
        self.events = []

    def started(self, task):
        self.events.append(("started", task.name))

    def finished(self, outcome):
        self.events.append((outcome.status, outcome.name))


def _tasks(study, root):
    return Ledger([study], root, "local", 1).todo()


def test_in_process_reports_each_run_started_then_finished(small_study, tmp_path):
    study = load_study(small_study(seeds=[1, 2], steps=4))
    recorder = Recorder()
    assert InProcess().run(_tasks(study, tmp_path), recorder) is False
    assert recorder.events == [("started", "small-s1"), ("completed", "small-s1"),
                               ("started", "small-s2"), ("completed", "small-s2")]


@pytest.mark.slow  # two worker processes start: 10-45 s on a busy 2-core machine
def test_the_local_pool_reports_one_start_and_one_end_per_run(small_study, tmp_path):
    study = load_study(small_study(seeds=[1, 2, 3], steps=4))
    recorder = Recorder()
    assert LocalPool(2).run(_tasks(study, tmp_path), recorder) is False
    names = [f"small-s{seed}" for seed in (1, 2, 3)]
    assert sorted(n for e, n in recorder.events if e == "started") == names
    assert sorted(n for e, n in recorder.events if e == "completed") == names
    for name in names:  # each run ends after it starts
        assert recorder.events.index(("started", name)) < recorder.events.index(
            ("completed", name))
    # two workers: the third run starts only once one of the first two has ended
    assert [e for e, _ in recorder.events[:3]] == ["started", "started", "completed"]


def test_ctrl_c_in_a_one_worker_sweep_exits_130_and_the_same_command_resumes(small_study,
                                                                             tmp_path,
                                                                             capsys):
    """--workers 1 trains in the sweep's own process: Ctrl-C reaches `train`'s handler."""
    path = small_study(seeds=[1, 2], steps=60, epochs=4)
    args = ["sweep", str(path), "--out", str(tmp_path / "out"), "--no-progress"]
    root = tmp_path / "out" / "small"

    def interrupt_when_training():
        deadline = time.monotonic() + 120
        while not _training(root) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_training, daemon=True).start()
    assert main(args) == 130
    out = capsys.readouterr().out
    assert [r["status"] for r in read_manifest(root)["runs"]] == ["stopped", "pending"]
    assert "not finished: 1 pending, 1 stopped; run the same command again" in out
    assert main(args) == 0
    assert "2 runs: 2 completed; 0 already done" in capsys.readouterr().out
    reference = run_sweep(load_study(path), tmp_path / "whole", progress=False)
    assert _rows(root).equals(_rows(reference.root))


# ---------------------------------------------------------------------------------------
# the command line, killed and interrupted


def _sweep(path, out):
    return [sys.executable, "-m", "sgdwalk.cli", "sweep", str(path), "--out", str(out),
            "--workers", "2", "--no-progress"]


def _training(root) -> dict:
    """Run folder name -> pid of the process writing it, for runs past 10 rows."""
    out = {}
    for path in find_runs(root) if root.is_dir() else []:
        pid = run_writer(path)
        try:
            with RunStore.open(path) as run:
                rows = len(run.scalars())
        except Exception:  # a store created this instant has no tables yet
            continue
        if pid is not None and rows > 10:
            out[path.name] = int(pid)
    return out


def _when(ready, proc, timeout=240):
    """Poll `ready()` until it gives something; fail if `proc` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        found = ready()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("timed out")


def _freeze_two_mid_run(root, proc, last_step: int) -> list[int]:
    """SIGSTOP the two workers once both write rows and, by their committed steps, are at
    least 5 steps short of `last_step`: frozen inside `train`'s loop, whose handler turns
    a Ctrl-C into checkpoint-and-stop, so neither run can finish before the signal lands
    (sending it to running workers raced runs that ended first). Returns their pids."""
    while True:
        writing = _when(lambda: (w := _training(root)) and len(w) == 2 and w, proc)
        for pid in writing.values():
            os.kill(pid, signal.SIGSTOP)
        newest = {os.path.basename(path): step for path, _, step, _ in run_progress(root)}
        if all(newest.get(name, last_step) < last_step - 5 for name in writing):
            return list(writing.values())
        for pid in writing.values():  # too late (or unreadable): let them go and look again
            os.kill(pid, signal.SIGCONT)


def _rows(root):
    table = load(root).table().drop(columns=["run_dir"])
    return table.sort_values(["run_id", "step"]).reset_index(drop=True)


@pytest.mark.slow
def test_a_killed_worker_fails_its_run_and_the_sweep_goes_on(small_study, tmp_path):
    path = small_study(seeds=[1, 2, 3, 4], steps=120, epochs=7)
    out = tmp_path / "out"
    root = out / "small"
    proc = subprocess.Popen(_sweep(path, out), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    writing = _when(lambda: (w := _training(root)) and len(w) == 2 and w, proc)
    victim = sorted(writing)[0]
    assert writing[victim] != proc.pid  # a worker process trains it, not the sweep
    os.kill(writing[victim], signal.SIGKILL)  # as the out-of-memory killer would
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stdout + stderr
    assert "Traceback" not in stderr

    rows = {r["dir"]: r for r in read_manifest(root)["runs"]}
    error = "its worker process was killed by SIGKILL (kill -9, or the out-of-memory killer)"
    assert rows[victim]["status"] == "failed" and rows[victim]["error"] == error
    # the run training beside it and the two queued ones ran to their end
    others = [r for d, r in rows.items() if d != victim]
    assert [(r["status"], r["steps"]) for r in others] == [("completed", 120)] * 3
    assert f"failed   {rows[victim]['name']}: {error}" in stdout
    assert ("not finished: 1 failed; run the same command again to resume them "
            "(finished runs are skipped)") in stdout

    again = subprocess.run(_sweep(path, out), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "small (cpu, local): 4 runs: 4 completed; 3 already done" in again.stdout
    # the killed run resumed from its checkpoint: its rows are those of an unbroken run
    study = load_study(path)
    entry = [e for e in study.entries if e.config.name == rows[victim]["name"]]
    alone = run_sweep(dataclasses.replace(study, entries=tuple(entry)), tmp_path / "alone",
                      workers=2, progress=False)  # the sweep's torch threads
    killed = _rows(root)
    assert _rows(alone.root).equals(
        killed[killed["run_id"] == rows[victim]["run_id"]].reset_index(drop=True))


@pytest.mark.slow
def test_ctrl_c_stops_a_sweep_with_status_130_and_the_same_command_resumes_it(small_study,
                                                                             tmp_path):
    # runs long enough (several seconds) that both workers are mid-run at once even when
    # they start a second apart on an idle machine: 120-step runs let the first finish
    # before the second was past its tenth row
    path = small_study(seeds=[1, 2, 3], steps=600, epochs=32)
    out = tmp_path / "out"
    root = out / "small"
    every_step = ["--set", "train.flush_every=1"]  # committed rows show how far a run got
    proc = subprocess.Popen(_sweep(path, out) + every_step, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    workers = _freeze_two_mid_run(root, proc, last_step=599)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the sweep and its workers
    for pid in workers:  # the Ctrl-C waits for them inside their training loops
        os.kill(pid, signal.SIGCONT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr
    statuses = [r["status"] for r in read_manifest(root)["runs"]]
    assert statuses == ["stopped", "stopped", "pending"]  # checkpointed; the third never began
    assert ("not finished: 1 pending, 2 stopped; run the same command again to resume them"
            in stdout)

    again = subprocess.run(_sweep(path, out) + every_step, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "3 runs: 3 completed; 0 already done" in again.stdout
    reference = run_sweep(load_study(path, overrides=every_step[1:]), tmp_path / "whole",
                          workers=2, progress=False)
    assert _rows(root).equals(_rows(reference.root))
