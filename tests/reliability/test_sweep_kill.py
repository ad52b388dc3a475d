"""A sweep with several workers, SIGKILLed mid-way several times (the sweep process alone,
leaving its workers orphaned for a moment, or its whole process group) and restarted at
once: every run ends complete, none duplicated, no row lost, every checkpoint as in a sweep
that was never stopped. (tests/studies/test_resume.py kills a 2-worker sweep once.)"""

from __future__ import annotations

import re
import subprocess

import pytest

from sgdwalk import load
from sgdwalk.store import RunStore, find_runs, read_manifest
from sgdwalk.studies import load_study, run_sweep

from .conftest import cli, kill_when, same_run

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer

RUNS = 8
# (runs completed in the manifest, whole process group?) at each kill
KILLS = [(1, False), (3, True), (5, False)]


def _completed(root) -> int:
    return sum(r["status"] == "completed" for r in (read_manifest(root) or {"runs": []})["runs"])


def _running(root) -> int:
    """Runs part-way through: past their first checkpoint and not finished."""
    count = 0
    for path in find_runs(root) if root.is_dir() else []:
        try:
            with RunStore.open(path) as run:
                if run.meta().get("status") == "running" and len(run.scalars()) > 10:
                    count += 1
        except Exception:  # a store created this instant has no tables yet
            continue
    return count


def _rows(root):
    table = load(root).table().drop(columns=["run_dir"])
    return table.sort_values(["run_id", "step"]).reset_index(drop=True)


@pytest.mark.slow
def test_a_sweep_killed_three_times_with_three_workers_finishes_every_run_once(small_study,
                                                                              tmp_path):
    path = small_study(seeds=range(1, RUNS + 1), steps=120, epochs=7)
    out = tmp_path / "killed"
    root = out / "small"
    cmd = cli("sweep", path, "--out", out, "--workers", "3", "--no-progress")
    done_at_kill = []
    for at, group in KILLS:
        landed = kill_when(cmd, lambda at=at: _completed(root) >= at and _running(root) >= 1,
                           timeout=300, group=group)
        assert landed, f"the sweep ended before {at} runs were done"
        done_at_kill.append(_completed(root))
        with_status = {r["status"] for r in read_manifest(root)["runs"]}
        assert "completed" in with_status and with_status - {"completed"}  # mid-sweep
    assert done_at_kill == sorted(done_at_kill) and done_at_kill[-1] < RUNS

    last = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert last.returncode == 0, last.stdout + last.stderr
    already = re.search(rf"{RUNS} runs: {RUNS} completed; (\d+) already done", last.stdout)
    assert already, last.stdout
    # orphaned workers may finish a run in the second before they notice the sweep died
    assert done_at_kill[-1] <= int(already.group(1)) <= RUNS

    runs = find_runs(root)
    assert len(runs) == RUNS  # one folder per run: nothing duplicated
    metas = []
    for run in runs:
        with RunStore.open(run) as store:
            metas.append(store.meta())
    assert {m["status"] for m in metas} == {"completed"}
    assert len({m["run_id"] for m in metas}) == RUNS
    assert [r["status"] for r in read_manifest(root)["runs"]] == ["completed"] * RUNS

    reference = run_sweep(load_study(path), tmp_path / "whole", workers=3, progress=False)
    assert reference.ok
    assert _rows(root).equals(_rows(reference.root))  # no row lost, none changed
    for record in reference.records:  # rows, vectors, final meta, checkpoints: bit for bit
        same_run(root / record.dir, reference.root / record.dir)
