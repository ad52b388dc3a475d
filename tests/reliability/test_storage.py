"""Storage faults through the CLI, as a user meets them: a read-only output folder, a disk
that fills up mid-run, a corrupted metric store, a run locked by another writer, and a
report read while the run is written. Each is one line and exit 2; rows already written
stay intact, and the run resumes once the fault is gone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
import torch

from sgdwalk.cli import main
from sgdwalk.config import load_config
from sgdwalk.experiment import train
from sgdwalk.store import RunStore, read_run, run_writer
from sgdwalk.store.identity import run_dir_name
from sgdwalk.store.metrics import MetricDb

from .conftest import cli, equal_states, last_step, one_line_error, run_cli, same_run, sets

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer

OVERRIDES = [
    "data.probe_size=64", "data.probe_batch=32", "model.widths=[64]", "optim.batch_size=32",
    "train.epochs=2", "train.checkpoint_every=5", "train.keep_checkpoints=100",
    "train.flush_every=3", "train.progress=false", "walk.preset=line", "walk.line_points=7",
]


def _prefix_of(got, want) -> int:
    """Assert `got` is whole steps -1..k of `want` (values equal); returns k."""
    steps = got.index.tolist()
    assert steps == list(range(-1, len(steps) - 1)), steps[:5]
    assert got.equals(want.loc[got.index, got.columns]), "committed rows differ"
    return steps[-1]


# ---------------------------------------------------------------------------------------
# a read-only output folder

_ROOT_POWERS = "--bounding-set=-dac_override,-dac_read_search,-fowner"


def _unprivileged(cmd: list[str]) -> list[str]:
    """`cmd` such that file permissions bind: as root, without the capabilities that let
    root write into a chmod 555 folder (setpriv), as tests/store/test_faults.py does."""
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: chmod cannot stop root's writes")
    probe = subprocess.run([setpriv, _ROOT_POWERS, "true"], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"cannot drop root's file capabilities here: {probe.stderr.strip()}")
    return [setpriv, _ROOT_POWERS, *cmd]


def test_train_into_a_read_only_folder_is_one_line_and_writes_nothing(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        cmd = _unprivileged(cli("train", "default", "--out", parent / "runs",
                                *sets(["train.max_steps=2", "data.probe_size=32"]),
                                "--no-progress"))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        sweep = subprocess.run(_unprivileged(cli("sweep", "trajectory", "--out", parent,
                                                 "--no-progress")),
                               capture_output=True, text=True, timeout=120)
    finally:
        parent.chmod(0o755)
    one_line_error(proc, f"{parent / 'runs'}", "expected a writable folder to create the run "
                   "folder, got: Permission denied")
    one_line_error(sweep, f"sweep {parent / 'trajectory'}: expected a writable folder")
    assert list(parent.iterdir()) == []


def test_resume_of_a_run_in_a_read_only_folder_keeps_its_rows(tmp_path):
    config = load_config("default", [*OVERRIDES, "train.epochs=1", "walk.preset=cheap"])
    result = train(config, tmp_path, halt_at_step=12)
    before = read_run(result.run_dir)
    result.run_dir.chmod(0o555)
    try:
        proc = subprocess.run(_unprivileged(cli("resume", result.run_dir, "--no-progress")),
                              capture_output=True, text=True, timeout=120)
    finally:
        result.run_dir.chmod(0o755)
    one_line_error(proc, "expected a writable")
    assert read_run(result.run_dir).equals(before)
    assert main(["resume", str(result.run_dir), "--no-progress"]) == 0  # writable again


# ---------------------------------------------------------------------------------------
# a disk that fills up

_FULL_DISK = """\
set -u
mount -t tmpfs -o size={size} tmpfs "$MNT" || exit 90
"$PY" -m sgdwalk.cli train default --out "$MNT/runs" {sets} --no-progress \\
    >"$OUT/first.out" 2>"$OUT/first.err"
echo $? >"$OUT/first.rc"
cp -a "$MNT/runs" "$OUT/after-full"
mount -o remount,size=64m "$MNT" || exit 91
"$PY" -m sgdwalk.cli resume "$MNT/runs/$RUN" --no-progress >"$OUT/second.out" 2>"$OUT/second.err"
echo $? >"$OUT/second.rc"
cp -a "$MNT/runs" "$OUT/final"
exit 0
"""


@pytest.mark.slow
def test_a_full_disk_mid_run_is_one_line_and_resume_finishes_it(tmp_path):
    """A real full disk: a 600 KiB tmpfs in a private mount namespace (unshare), which a
    run with many checkpoints fills part-way; then the tmpfs grows and the run resumes."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare: cannot mount a small tmpfs")
    config = load_config("default", OVERRIDES)
    reference = train(config, tmp_path / "ref")
    (tmp_path / "mnt").mkdir()
    script = _FULL_DISK.format(size="600k", sets=" ".join(sets(OVERRIDES)))
    env = {**os.environ, "MNT": str(tmp_path / "mnt"), "OUT": str(tmp_path),
           "PY": sys.executable, "RUN": run_dir_name(config)}
    proc = subprocess.run([unshare, "--user", "--map-root-user", "--mount", "bash", "-c",
                           script], capture_output=True, text=True, timeout=300, env=env)
    if proc.returncode in (1, 90):  # unshare refused, or mount refused inside
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr

    first = subprocess.CompletedProcess([], int((tmp_path / "first.rc").read_text()),
                                        (tmp_path / "first.out").read_text(),
                                        (tmp_path / "first.err").read_text())
    one_line_error(first, "expected free disk space to ", "got: the disk is full")
    stopped = tmp_path / "after-full" / run_dir_name(config)
    want = read_run(reference.run_dir)
    k = _prefix_of(read_run(stopped), want)  # earlier rows intact
    assert 5 <= k < want.index.max(), "the disk should fill part-way through the run"
    with RunStore.open(stopped) as store:  # and the newest checkpoint is whole
        step, state = store.latest_checkpoint()
        assert store.meta()["status"] == "running"
    assert 0 < step <= k + 1
    kept = torch.load(reference.run_dir / "checkpoints" / f"step-{step:08d}.pt",
                      weights_only=True)
    identity = kept.pop("run")  # latest_checkpoint checks it and returns the state without
    assert identity["run_id"] == stopped.name.rsplit("-", 1)[1]
    equal_states(state, kept, f"step {step}")
    assert not [p for p in stopped.rglob("*") if ".tmp-" in p.name]  # no half files

    assert (tmp_path / "second.rc").read_text().strip() == "0", (
        (tmp_path / "second.err").read_text())
    same_run(tmp_path / "final" / run_dir_name(config), reference.run_dir)


def test_a_full_disk_simulated_in_process_keeps_rows_and_resumes(tmp_path, monkeypatch,
                                                                 capsys):
    """The same fault wherever a tmpfs cannot be mounted: SQLite's max_page_count caps the
    metric store a few pages above its size when the run opens it."""
    config = load_config("default", OVERRIDES)
    reference = train(config, tmp_path / "ref")
    real_init = MetricDb.__init__

    def small_disk(self, file, write, create=False):
        real_init(self, file, write, create)
        if write:
            pages = self.con.execute("PRAGMA page_count").fetchone()[0]
            self.con.execute(f"PRAGMA max_page_count={pages + 12}")

    monkeypatch.setattr(MetricDb, "__init__", small_disk)
    out = tmp_path / "runs"
    assert main(["train", "default", "--out", str(out), *sets(OVERRIDES)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "metric rows, got: the disk is full" in err[0], err
    run_dir = out / run_dir_name(config)
    k = _prefix_of(read_run(run_dir), read_run(reference.run_dir))
    assert 5 <= k < reference.steps - 1
    assert run_writer(run_dir) is None  # the failed run let go of its lock at once

    monkeypatch.undo()  # space is back
    assert main(["resume", str(run_dir), "--no-progress"]) == 0
    same_run(run_dir, reference.run_dir)


# ---------------------------------------------------------------------------------------
# a corrupted store, a second writer, a reader during the write


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupted_metric_store_is_one_line_for_resume_claims_and_report(tmp_path, damage):
    config = load_config("default", [*OVERRIDES, "train.epochs=1"])
    result = train(config, tmp_path, halt_at_step=12)
    db = result.run_dir / "metrics.sqlite"
    checkpoints = sorted((result.run_dir / "checkpoints").iterdir())
    data = db.read_bytes()
    db.write_bytes(b"not a database " * 300 if damage == "garbage" else data[: len(data) // 3])
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    for command in (["resume", result.run_dir], ["claims", result.run_dir],
                    ["report", result.run_dir]):
        proc = run_cli(*command)
        one_line_error(proc, "metrics.sqlite: expected an sqlite metric store, got a ")
    assert sorted((result.run_dir / "checkpoints").iterdir()) == checkpoints  # untouched
    assert not (result.run_dir / "report.html").exists()


@pytest.mark.slow
def test_a_second_resume_of_a_running_run_is_refused_while_the_first_finishes(tmp_path):
    # long enough that the first is still training when the second has started up
    config = load_config("default", [*OVERRIDES, "train.epochs=15", "walk.preset=economy"])
    reference = train(config, tmp_path / "ref")
    result = train(config, tmp_path / "runs", halt_at_step=3)
    first = subprocess.Popen(cli("resume", result.run_dir, "--no-progress"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while run_writer(result.run_dir) != str(first.pid):
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.01)
        second = run_cli("resume", result.run_dir, "--no-progress")
        assert first.poll() is None, "the first resume should still be running"
        one_line_error(second, f"run {result.run_dir} is being written by another process "
                       f"(pid {first.pid})")
        out, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert out.startswith("completed: ")
    same_run(result.run_dir, reference.run_dir)


def test_report_and_reads_during_a_run_see_consistent_prefixes(tmp_path):
    overrides = [*OVERRIDES, "train.epochs=2", "train.flush_every=1"]
    config = load_config("default", overrides)
    run_dir = tmp_path / run_dir_name(config)
    writer = subprocess.Popen(cli("train", "default", "--out", tmp_path, *sets(overrides)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen, report = [], None
    try:
        while writer.poll() is None:
            if last_step(run_dir) >= 3:
                seen.append(read_run(run_dir))
                if report is None:  # a report of the run, written while the run is
                    report = subprocess.Popen(cli("report", run_dir), stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True)
            time.sleep(0.02)
        out, err = report.communicate(timeout=120)
    finally:
        for proc in (writer, report):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert writer.returncode == 0, writer.stderr.read()
    final = read_run(run_dir)
    ends = [_prefix_of(table, final) for table in seen]
    assert len(set(ends)) >= 3 and min(ends) < final.index.max()  # read while written
    assert report.returncode == 0 and out.startswith("report: "), err
    assert (run_dir / "report.html").read_text().count("</html>") == 1
