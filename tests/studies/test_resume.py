"""A sweep killed part-way (SIGKILL to the sweep and its workers) and started again finishes
every run exactly once, with the rows of a sweep that was never stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from sgdwalk import load
from sgdwalk.errors import StoreError
from sgdwalk.store import RunStore, find_runs, read_manifest
from sgdwalk.studies import load_study, run_sweep

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer

RUNS = 6


def _sweep_cmd(path, out):
    return [sys.executable, "-m", "sgdwalk.cli", "sweep", str(path), "--out", str(out),
            "--workers", "2", "--no-progress"]


def _completed(root) -> int:
    manifest = read_manifest(root) or {"runs": []}
    return sum(r["status"] == "completed" for r in manifest["runs"])


def _partial(root) -> int:
    """Runs part-way through, with rows beyond their first checkpoint."""
    count = 0
    for path in find_runs(root) if root.is_dir() else []:
        try:
            with RunStore.open(path) as run:
                if run.meta().get("status") == "running" and len(run.scalars()) > 20:
                    count += 1
        except StoreError:  # a store being created this instant has no tables yet
            continue
    return count


def _metas(root) -> dict:
    out = {}
    for path in find_runs(root):
        with RunStore.open(path) as run:
            out[path.name] = run.meta()
    return out


def _rows(root):
    table = load(root).table().drop(columns=["run_dir"])
    return table.sort_values(["run_id", "step"]).reset_index(drop=True)


def test_killed_sweep_restarts_without_repeating_a_run(small_study, tmp_path):
    path = small_study(seeds=list(range(1, RUNS + 1)), steps=100, epochs=6)
    out = tmp_path / "killed"
    root = out / "small"
    proc = subprocess.Popen(_sweep_cmd(path, out), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if _completed(root) >= 2 and _partial(root) >= 1:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker processes, mid-run
    proc.wait(timeout=30)
    # what the restart skips is what the run folders say: a run can finish (meta.json says
    # completed) an instant before the kill stops the sweep from writing that to sweep.json
    before = {name: meta for name, meta in _metas(root).items()
              if meta["status"] == "completed"}
    done_before = len(before)
    assert 2 <= done_before < RUNS, "the kill should land mid-sweep"
    assert done_before - 2 <= _completed(root) <= done_before  # 2 workers
    assert any(m["status"] == "running" for m in _metas(root).values())  # killed mid-run

    again = subprocess.run(_sweep_cmd(path, out), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{done_before} already done" in again.stdout

    metas = _metas(root)
    assert len(metas) == RUNS  # one folder per run: nothing duplicated
    assert {m["status"] for m in metas.values()} == {"completed"}
    assert len({m["run_id"] for m in metas.values()}) == RUNS
    for name, meta in before.items():  # finished before the kill: not trained again
        assert metas[name] == meta
    assert [r["status"] for r in read_manifest(root)["runs"]] == ["completed"] * RUNS

    reference = run_sweep(load_study(path), tmp_path / "whole", workers=2, progress=False)
    assert reference.ok
    assert _rows(root).equals(_rows(reference.root))


def test_a_run_killed_while_its_folder_was_created_trains_next_time(small_study, tmp_path):
    """A kill between writing config.toml/meta.json and creating the metric tables leaves
    an empty metrics.sqlite; the next sweep must train that run, not fail on it."""
    from sgdwalk.config import config_to_toml
    from sgdwalk.store.identity import run_dir_name

    study = load_study(small_study(seeds=[1]))
    folder = tmp_path / "small" / run_dir_name(study.runs[0])
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(config_to_toml(study.runs[0]))
    (folder / "meta.json").write_text('{"status": "created"}')
    (folder / "metrics.sqlite").write_bytes(b"")
    result = run_sweep(study, tmp_path, progress=False)
    assert result.ok and result.records[0].status == "completed"
    assert len(load(result.root).table()) == 13
