"""Several sweep processes under one root at once: every run trained once, no rows lost, no
run id shared, and every sweep ends knowing every run."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time

import pytest

from sgdwalk import load
from sgdwalk.store import RunStore, find_runs, read_manifest
from sgdwalk.studies import load_study, run_sweep

from .conftest import cli, same_run

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer

RUNS = 6
SUMMARY = re.compile(r"(\d+) runs: .*; (\d+) already done(?:; (\d+) finished by another "
                     r"process)?;")


def _rows(root):
    table = load(root).table().drop(columns=["run_dir"])
    return table.sort_values(["run_id", "step"]).reset_index(drop=True)


def _trained_here(stdout: str) -> int:
    """Runs this sweep process trained itself: all, less those found done or done elsewhere."""
    match = SUMMARY.search(stdout)
    assert match, stdout
    total, before, elsewhere = (int(g or 0) for g in match.groups())
    assert total == RUNS
    return total - before - elsewhere


@pytest.mark.slow
def test_three_sweeps_of_one_study_at_once_train_each_run_exactly_once(small_study, tmp_path):
    path = small_study(seeds=range(1, RUNS + 1), steps=40, epochs=3)
    out = tmp_path / "shared"
    procs = [subprocess.Popen(cli("sweep", path, "--out", out, "--workers", str(workers),
                                  "--no-progress"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for workers in (2, 1, 2)]
    results = [(p, *p.communicate(timeout=600)) for p in procs]
    for proc, stdout, stderr in results:
        assert proc.returncode == 0, stdout + stderr
        assert "Traceback" not in stderr
    trained = [_trained_here(stdout) for _, stdout, _ in results]
    assert sum(trained) == RUNS, trained  # no run trained twice, none skipped by all

    root = out / "small"
    runs = find_runs(root)
    assert len(runs) == RUNS  # one folder per run: no duplicates, no collisions
    metas = []
    for run in runs:
        with RunStore.open(run) as store:
            metas.append(store.meta())
            assert store.latest_checkpoint()[0] == 40
    assert {m["status"] for m in metas} == {"completed"}
    assert len({m["run_id"] for m in metas}) == RUNS
    assert [r["status"] for r in read_manifest(root)["runs"]] == ["completed"] * RUNS

    reference = run_sweep(load_study(path), tmp_path / "alone", workers=2, progress=False)
    assert reference.ok
    assert _rows(root).equals(_rows(reference.root))  # no row lost or changed


HOLDER = """
import sys
from sgdwalk.store.identity import create_run
from sgdwalk.studies import load_study
from sgdwalk.experiment import build_trainer, run_trainer

study = load_study(sys.argv[1])
config = study.runs[1]
store = create_run(config, sys.argv[2])  # takes the run's writer lock
print("locked", flush=True)
sys.stdin.readline()
run_trainer(build_trainer(config), store, progress=False)  # finishes it, then lets go
"""


def test_a_sweep_waits_for_a_run_another_process_is_writing(small_study, tmp_path):
    """Another process holds run 2's lock: the sweep trains runs 1 and 3, marks run 2 as
    running meanwhile, then waits, and records the outcome the other process stored."""
    path = small_study(seeds=[1, 2, 3], steps=15)
    root = tmp_path / "out" / "small"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLDER), str(path),
                               str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "locked"
    sweep = subprocess.Popen(cli("sweep", path, "--out", tmp_path / "out"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        statuses = []
        while statuses != ["completed", "running", "completed"]:
            assert sweep.poll() is None and time.monotonic() < deadline, statuses
            statuses = [r["status"] for r in (read_manifest(root) or {"runs": []})["runs"]]
            time.sleep(0.05)
        holder.stdin.write("\n")
        holder.stdin.close()
        assert holder.wait(timeout=120) == 0
        out, err = sweep.communicate(timeout=120)
    finally:
        for proc in (holder, sweep):
            if proc.poll() is None:
                proc.kill()
    assert sweep.returncode == 0, out + err
    assert "3 completed; 0 already done; 1 finished by another process;" in out
    assert "busy      small-s2: run " in out and "is being written by another process" in out
    assert [r["status"] for r in read_manifest(root)["runs"]] == ["completed"] * 3
    reference = run_sweep(load_study(path), tmp_path / "alone", progress=False)
    for record in reference.records:
        same_run(root / record.dir, reference.root / record.dir)
