"""Train a study's runs into OUT/<study>/<name>-<id>: skip the done, resume the interrupted.

    result = run_sweep(load_study("lr-batch"), "runs", workers=2)
    print(result.summary())

A sweep gets studies already expanded and checked (`load_study`), books every run in a
`Ledger` (each study's sweep.json), and hands the runs not done yet to an executor
(`sgdwalk.studies.executors`) with the ledger and the progress view as its listeners. A run
that diverges is a result; a run that raises, or whose worker process dies, is recorded
failed with its one-line reason and the sweep goes on; Ctrl-C stops the sweep. Starting the
same sweep again continues it: finished runs are skipped, the others resume from their
newest checkpoints.

Several sweeps of the same study may run at once under one OUT (more processes, other
machines on a shared filesystem): a run is trained by whichever process takes its writer
lock first; the others put it aside ("busy"), train the rest, then wait for its lock to be
released and record the outcome the other process stored (or resume it, if that process
died). No run is trained twice at once, and every sweep ends knowing every run.
"""

from __future__ import annotations

import time

from sgdwalk.errors import ConfigError
from sgdwalk.store import run_meta, run_status, run_writer
from sgdwalk.studies.executors import Executor, Listener, make_executor
from sgdwalk.studies.expand import Study
from sgdwalk.studies.ledger import Ledger, SweepResult
from sgdwalk.studies.progress import ProgressView
from sgdwalk.studies.worker import DONE, Outcome, RunTask

BACKENDS = ("local", "ray")
WAIT_POLL_S = 1.0  # how often a sweep looks whether another process let go of a run


def run_sweep(study: Study, out="runs", workers: int = 1, backend: str = "local",
              address: str | None = None, progress: bool | None = None) -> SweepResult:
    """Train every run of `study` under `out`/<study name>/, skipping those already done.

    Args:
        study: from `load_study`.
        out: the root folder; runs go to out/<study>/<name>-<id>. With Ray on several
            machines it must be a path on a filesystem every node shares.
        workers: runs trained at once (local: worker processes, or this process when 1;
            ray: tasks in flight).
        backend: "local" or "ray".
        address: Ray cluster address (ray backend); None starts a local Ray instance.
        progress: a bar over runs with one line per finished run (default: on).
    """
    return run_studies([study], out, workers, backend, address, progress)[0]


def run_studies(studies: list[Study], out="runs", workers: int = 1, backend: str = "local",
                address: str | None = None, progress: bool | None = None,
                label: str | None = None) -> list[SweepResult]:
    """Train the runs of several studies as one sweep: one executor (so no worker idles
    between studies) and one progress view; each study keeps its own folder out/<study>/
    and manifest. Arguments as `run_sweep`; label names the progress bar (default: the
    first study). Returns one SweepResult per study, in order; their `seconds` is the wall
    time of the whole call."""
    _check(studies, workers, backend)
    executor = make_executor(backend, workers, address)
    started = time.perf_counter()
    ledger = Ledger(studies, out, backend, workers)
    tasks = ledger.todo()
    view = ProgressView(ledger.total, ledger.total - len(tasks), label or studies[0].name,
                        True if progress is None else progress)
    busy = _Busy()
    listener = _Listeners(ledger, view, busy)
    try:
        interrupted = executor.run(tasks, listener)
        while busy.names and not interrupted:
            interrupted = _after_other_writers(busy.names, ledger, executor, listener)
    finally:
        view.close()
    return ledger.results(time.perf_counter() - started, interrupted, backend)


def _check(studies: list[Study], workers: int, backend: str) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError(f"workers: expected an integer >= 1, got {workers!r}")
    names = [s.name for s in studies]
    if not studies or len(set(names)) != len(names):
        raise ConfigError(f"studies: expected one or more distinct studies, got {names}")
    seen = set()
    for run in (e.config.name for s in studies for e in s.entries):
        if run in seen:
            raise ConfigError(f"studies: expected distinct run names, got {run!r} twice")
        seen.add(run)


class _Listeners:
    """Several listeners as one, called in order."""

    def __init__(self, *listeners: Listener):
        self.listeners = listeners

    def started(self, task: RunTask) -> None:
        for listener in self.listeners:
            listener.started(task)

    def finished(self, outcome: Outcome) -> None:
        for listener in self.listeners:
            listener.finished(outcome)


class _Busy:
    """A listener that sets aside the runs another process is writing."""

    def __init__(self):
        self.names: list[str] = []

    def started(self, task: RunTask) -> None:
        pass

    def finished(self, outcome: Outcome) -> None:
        if outcome.status == "busy":
            self.names.append(outcome.name)


def _after_other_writers(busy: list[str], ledger: Ledger, executor: Executor,
                         listener: Listener) -> bool:
    """Wait until another process lets go of a busy run; record the run if that process
    finished it, else train it here (its writer stopped or died). True on Ctrl-C."""
    try:
        free = _wait_for_writers(busy, ledger)
    except KeyboardInterrupt:
        return True
    again = []
    for name in free:
        busy.remove(name)
        run_dir = ledger.run_dir(name)
        status = run_status(run_dir)
        if status in DONE:
            steps = int(run_meta(run_dir).get("steps_done", 0))
            listener.finished(Outcome(name, status, steps, already_done=True))
        else:
            again.append(ledger.task(name))
    return executor.run(again, listener)


def _wait_for_writers(names: list[str], ledger: Ledger) -> list[str]:
    """Block until at least one of these runs' writer locks is free; their names. A writer
    that died let go at once (the kernel drops its lock)."""
    while True:
        free = [name for name in names if run_writer(ledger.run_dir(name)) is None]
        if free:
            return free
        time.sleep(WAIT_POLL_S)
