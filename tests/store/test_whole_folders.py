"""A run folder appears whole or not at all: a maker killed between its steps leaves only a
hidden temporary folder that no reader finds and the next maker removes; two makers of one
run end with one run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sgdwalk.errors import IncompleteRunError
from sgdwalk.store import RunStore, find_runs
from sgdwalk.store.disk import TMP_MARK

from .conftest import config_text

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer

# where the maker is killed: after config.toml and meta.json, before the metric tables;
# after everything, before the rename into place
KILL_POINTS = {
    "before_tables": "from sgdwalk.store.metrics import MetricDb\nMetricDb._create_schema = die",
    "before_rename": "os.rename = die",
}


def _make_and_die(path, point: str) -> subprocess.CompletedProcess:
    """Create the run at `path` in a child process that SIGKILLs itself at `point`."""
    code = "\n".join([
        "import os, signal",
        "from sgdwalk.store import RunStore",
        "def die(*args, **kwargs):",
        "    os.kill(os.getpid(), signal.SIGKILL)",
        KILL_POINTS[point],
        f"RunStore.create({str(path)!r}, {config_text()!r}, {{'status': 'created'}})",
    ])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def _temporaries(folder):
    return sorted(p.name for p in folder.iterdir() if TMP_MARK in p.name)


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_a_maker_killed_mid_way_leaves_no_run_that_a_reader_could_find(tmp_path, point):
    run = tmp_path / "sweep" / "run-1"
    proc = _make_and_die(run, point)
    assert proc.returncode == -9, proc.stderr  # really killed at that point
    assert not run.exists()
    left = _temporaries(tmp_path / "sweep")
    assert len(left) == 1 and left[0].startswith(".run-1.tmp-")  # hidden, by its name
    assert find_runs(tmp_path) == []  # never seen as a run
    with RunStore.create(run, config_text(), {"status": "created"}) as store:
        store.log(0, {"loss": 1.0})
    assert _temporaries(tmp_path / "sweep") == []  # the dead maker's folder is gone
    assert find_runs(tmp_path) == [run]
    with RunStore.open(run) as store:
        assert store.scalars()["loss"].tolist() == [1.0] and store.meta()["status"] == "created"


def test_a_live_makers_temporary_folder_is_left_alone(tmp_path):
    run = tmp_path / "run"
    other = tmp_path / f".run{TMP_MARK}{os.getppid()}"  # a living process: our parent
    other.mkdir()
    RunStore.create(run, config_text(), {}).close()
    assert other.is_dir()


def test_two_makers_of_one_run_end_with_one_run(tmp_path, monkeypatch):
    """The loser of the race to rename finds the winner's run and continues it (exist_ok),
    as a sweep started twice does; its own temporary folder is removed."""
    run = tmp_path / "run"
    real_rename = os.rename

    def winner_first(src, dst):
        monkeypatch.setattr(os, "rename", real_rename)
        with RunStore.create(dst, config_text(), {"by": "winner"}) as winner:
            winner.log(0, {"loss": 2.0})
        real_rename(src, dst)  # what the loser's rename meets: a non-empty folder

    monkeypatch.setattr(os, "rename", winner_first)
    with RunStore.create(run, config_text(), {"also": "loser"}, exist_ok=True) as loser:
        assert loser.meta() == {"by": "winner", "also": "loser"}
        assert loser.scalars()["loss"].tolist() == [2.0]
    assert _temporaries(tmp_path) == [] and find_runs(tmp_path) == [run]


def test_a_folder_left_half_made_by_an_older_maker_is_incomplete_not_damaged(tmp_path):
    """Before runs were made whole a kill could leave config.toml, meta.json and an empty
    metrics.sqlite: opening it says so with IncompleteRunError, which readers skip."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text(config_text())
    (run / "meta.json").write_text('{"status": "created"}')
    (run / "metrics.sqlite").write_bytes(b"")
    with pytest.raises(IncompleteRunError, match="database without the table"):
        RunStore.open(run)
    (run / "metrics.sqlite").unlink()
    RunStore.create(run, config_text(), {}, exist_ok=True).close()  # continuing completes it
    (run / "meta.json").unlink()
    with pytest.raises(IncompleteRunError, match="expected a run folder with meta.json"):
        RunStore.open(run)
