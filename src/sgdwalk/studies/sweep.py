"""Run a study's runs into OUT/<study>/<name>-<id>: skip the done, resume the interrupted.

Backends: "local" (default) trains in worker processes (spawn context, torch threads
max(1, cores // workers) each), or in this process when workers == 1; "ray" sends the same
runs to Ray as tasks (`sgdwalk.studies.ray_backend`). Every run is trained by `run_one`,
whatever the backend, and writes its own run folder; the sweep writes sweep.json (through
`sgdwalk.store`) after each run. A run that diverges is a result; a run that raises is
recorded as failed with its one-line error and the sweep goes on; a run that is stopped
(Ctrl-C) stops the sweep, and starting the same sweep again continues it.

Several sweeps of the same study may run at once under one OUT (more processes, other
machines on a shared filesystem): a run is trained by whichever process takes its writer
lock first; the others put it aside ("busy"), train the rest, then wait for its lock to be
released and record the outcome the other process stored (or resume it, if that process
died). No run is trained twice at once, and every sweep ends knowing every run.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from sgdwalk.config import config_from_toml, config_to_toml
from sgdwalk.errors import ConfigError, RunLockedError
from sgdwalk.runs import now, run_dir_name, run_id
from sgdwalk.store import read_manifest, run_meta, run_status, run_writer, write_manifest
from sgdwalk.studies.expand import Study

DONE = ("completed", "diverged")  # a run in either state is never trained again
BACKENDS = ("local", "ray")


@dataclass
class RunRecord:
    """What the sweep knows about one run; also a row of sweep.json's `runs`."""

    name: str
    run_id: str
    dir: str  # the run folder's name inside the study folder
    variant: str
    point: dict
    status: str = "pending"  # pending | running | completed | diverged | stopped | failed
    steps: int = 0
    seconds: float | None = None  # wall time of this sweep's attempt
    error: str | None = None  # failed: the one-line error
    skipped: bool = False  # already done before this sweep started
    elsewhere: bool = False  # finished by another process while this sweep waited for it

    def row(self) -> dict:
        return {"name": self.name, "run_id": self.run_id, "dir": self.dir,
                "variant": self.variant, "point": self.point, "status": self.status,
                "steps": self.steps, "seconds": self.seconds, "error": self.error}


@dataclass
class SweepResult:
    """The outcome of `run_sweep`: one record per run, in the study's order."""

    root: Path
    study: Study
    records: list[RunRecord]
    seconds: float = 0.0
    interrupted: bool = False
    backend: str = "local"

    @property
    def ok(self) -> bool:
        """True when every run ended completed or diverged (both are results)."""
        return not self.interrupted and all(r.status in DONE for r in self.records)

    def summary(self) -> str:
        """A few lines: the counts by status, then each failed or unfinished run."""
        counts: dict[str, int] = {}
        for r in self.records:
            counts[r.status] = counts.get(r.status, 0) + 1
        skipped = sum(r.skipped for r in self.records)
        elsewhere = sum(r.elsewhere for r in self.records)
        parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        other = f"; {elsewhere} finished by another process" if elsewhere else ""
        lines = [f"{self.study.name} ({self.study.scale}, {self.backend}): {len(self.records)} "
                 f"runs: {parts}; {skipped} already done{other}; {self.seconds:.0f} s"]
        for r in self.records:
            if r.status == "failed":
                lines.append(f"  failed   {r.name}: {r.error}")
            elif r.status == "diverged" and not r.skipped:
                lines.append(f"  diverged {r.name} at step {r.steps}")
        if self.interrupted or any(r.status not in DONE for r in self.records):
            lines.append("  not finished: run the same command again to continue it")
        return "\n".join(lines)


def run_sweep(study: Study, out="runs", workers: int = 1, backend: str = "local",
              address: str | None = None, progress: bool | None = None) -> SweepResult:
    """Train every run of `study` under `out`/<study name>/, skipping those already done.

    Args:
        study: from `load_study`.
        out: the root folder; runs go to out/<study>/<name>-<id>. With Ray on several
            machines it must be a path on a filesystem every node shares.
        workers: runs trained at once (local: worker processes; ray: tasks in flight).
        backend: "local" or "ray".
        address: Ray cluster address (ray backend); None starts a local Ray instance.
        progress: a bar over runs with one line per finished run (default: on).
    """
    return run_studies([study], out, workers, backend, address, progress)[0]


def run_studies(studies: list[Study], out="runs", workers: int = 1, backend: str = "local",
                address: str | None = None, progress: bool | None = None,
                label: str | None = None) -> list[SweepResult]:
    """Train the runs of several studies as one sweep: one pool of `workers` (so no worker
    idles between studies) and one progress view; each study keeps its own folder
    out/<study>/ and manifest. Arguments as `run_sweep`; label names the progress bar
    (default: the first study). Returns one SweepResult per study, in order; their
    `seconds` is the wall time of the whole call."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers: expected an integer >= 1, got {workers!r}")
    names = [s.name for s in studies]
    if not studies or len(set(names)) != len(names):
        raise ConfigError(f"studies: expected one or more distinct studies, got {names}")
    started = time.perf_counter()
    sweeps = []  # (study, root, manifest, records)
    for study in studies:
        root = Path(out) / study.name
        manifest = _Manifest(root, study, backend, workers)
        records = [_record(entry, root, manifest.old_rows) for entry in study.entries]
        manifest.write(records)
        sweeps.append((study, root, manifest, records))
    owner, tasks = {}, []  # run name -> (manifest, records, record); tasks in study order
    for study, root, manifest, records in sweeps:
        for record, entry in zip(records, study.entries):
            if record.name in owner:
                raise ConfigError(f"studies: expected distinct run names, got "
                                  f"{record.name!r} twice")
            owner[record.name] = (manifest, records, record)
            if not record.skipped:
                tasks.append(_task(entry, root, study))
    total = sum(len(records) for *_, records in sweeps)
    view = _ProgressView(total, total - len(tasks), label or names[0],
                         True if progress is None else progress)

    busy: dict[str, dict] = {}  # run name -> task, for runs another process is writing
    task_of = {task["name"]: task for task in tasks}

    def done(outcome: dict) -> None:
        manifest, records, record = owner[outcome["name"]]
        if outcome["status"] == "busy":  # come back to it once its writer lets go
            busy[record.name] = task_of[record.name]
            record.status = "running"
            manifest.write(records)
            view.note(f"busy      {record.name}: {outcome['error']}; waiting for it")
            return
        record.status, record.steps = outcome["status"], outcome["steps"]
        record.seconds, record.error = outcome["seconds"], outcome.get("error")
        record.elsewhere = bool(outcome.get("already_done"))  # finished since this sweep began
        manifest.write(records)
        view.finished(record)

    def dispatch(batch: list[dict]) -> bool:
        if backend == "ray":
            from sgdwalk.studies.ray_backend import run_on_ray

            return run_on_ray(batch, workers, address, done)
        if workers == 1:
            return _run_in_process(batch, done)
        return _run_in_pool(batch, workers, done)

    def settle(free: list[str]) -> list[dict]:
        """Record the busy runs another process finished; return the others to train."""
        again = []
        for name in free:
            task = busy.pop(name)
            manifest, records, record = owner[name]
            run_dir = Path(task["root"]) / record.dir
            status = run_status(run_dir)
            if status in DONE:
                record.status, record.elsewhere = status, True
                record.steps = int(run_meta(run_dir).get("steps_done", 0))
                manifest.write(records)
                view.finished(record)
            else:  # its writer stopped or died: resume it here
                again.append(task)
        return again

    interrupted = False
    try:
        interrupted = dispatch(tasks)
        while busy and not interrupted:
            free = _wait_for_writers(busy, owner)
            if free is None:  # Ctrl-C while waiting
                interrupted = True
            elif again := settle(free):
                interrupted = dispatch(again)
    finally:
        view.close()
        for _, _, manifest, records in sweeps:
            manifest.write(records)
    seconds = time.perf_counter() - started
    return [SweepResult(root, study, records, seconds,
                        interrupted or any(r.status == "stopped" for r in records), backend)
            for study, root, _, records in sweeps]


def _record(entry, root: Path, old_rows: dict) -> RunRecord:
    cfg = entry.config
    folder = run_dir_name(cfg)
    status = run_status(root / folder)
    record = RunRecord(cfg.name, run_id(cfg), folder, entry.variant, dict(entry.point))
    if status in DONE:
        record.status, record.skipped = status, True
        record.steps = int(run_meta(root / folder).get("steps_done", 0))
        record.seconds = old_rows.get(folder, {}).get("seconds")
    elif status is not None:
        record.status = "stopped"  # started before and not finished: resumes from there
    return record


def _task(entry, root: Path, study: Study) -> dict:
    """Everything a worker needs, as plain data (it crosses process and machine borders)."""
    return {"name": entry.config.name, "config": config_to_toml(entry.config),
            "root": str(root), "meta": {"study": study.name, "variant": entry.variant,
                                        "scale": study.scale, "point": entry.point}}


class _Manifest:
    def __init__(self, root: Path, study: Study, backend: str, workers: int):
        old = read_manifest(root) or {}
        self.old_rows = {r.get("dir"): r for r in old.get("runs", []) if isinstance(r, dict)}
        self.root = root
        self.head = {"study": study.name, "scale": study.scale, "source": study.source,
                     "overrides": list(study.overrides), "claims": list(study.claims),
                     "description": study.description, "backend": backend,
                     "workers": workers, "started": old.get("started", now())}

    def write(self, records: list[RunRecord]) -> None:
        write_manifest(self.root, {**self.head, "updated": now(),
                                   "runs": [r.row() for r in records]})


# ---------------------------------------------------------------------------------------
# one run, wherever it executes


def run_one(task: dict, threads: int | None = None) -> dict:
    """Train one run of a sweep; never raises for a failing run (the outcome says so).

    Returns {name, status, steps, seconds, run_dir, error, already_done}: status is the
    training's (completed | diverged | stopped), "failed" with `error` the exception's one
    line, or "busy" when another process holds the run's writer lock (nothing was written);
    already_done: the run had been finished (by another process) before this call.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    from sgdwalk.train import train

    started = time.perf_counter()
    outcome = {"name": task["name"], "status": "failed", "steps": 0, "run_dir": None,
               "error": None}
    try:
        config = config_from_toml(task["config"])
        # float results depend on the thread count: record it with the run
        meta = {**task["meta"], "torch_threads": torch.get_num_threads()}
        result = train(config, task["root"], progress=False, meta=meta)
        outcome.update(status=result.status, steps=result.steps, run_dir=str(result.run_dir),
                       already_done=result.already_done)
    except RunLockedError as exc:  # another process is training it: the sweep comes back
        outcome.update(status="busy", error=one_line(exc))
    except Exception as exc:  # any failure of one run is recorded; the sweep goes on
        outcome["error"] = one_line(exc)
    outcome["seconds"] = round(time.perf_counter() - started, 3)
    return outcome


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    from sgdwalk.errors import SgdwalkError

    if isinstance(exc, SgdwalkError):
        return message or type(exc).__name__
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


WAIT_POLL_S = 1.0  # how often a sweep looks whether another process let go of a run


def _wait_for_writers(busy: dict, owner: dict) -> list[str] | None:
    """Block until at least one busy run's writer lock is free; their names, or None on
    Ctrl-C. A writer that died let go at once (the kernel drops its lock)."""
    try:
        while True:
            free = [name for name, task in busy.items()
                    if run_writer(Path(task["root"]) / owner[name][2].dir) is None]
            if free:
                return free
            time.sleep(WAIT_POLL_S)
    except KeyboardInterrupt:
        return None


def _run_in_process(tasks: Iterable[dict], done: Callable[[dict], None]) -> bool:
    for task in tasks:
        outcome = run_one(task)
        done(outcome)
        if outcome["status"] == "stopped":  # Ctrl-C: train checkpointed and stopped
            return True
    return False


# ---------------------------------------------------------------------------------------
# the local pool


def _run_in_pool(tasks: list[dict], workers: int, done: Callable[[dict], None]) -> bool:
    """Train `tasks` in `workers` spawned processes, handing out one task per idle worker
    (so on Ctrl-C nothing waits in a queue). Returns True when interrupted."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    threads = max(1, (os.cpu_count() or 1) // workers)
    waiting = list(tasks)
    pool = ProcessPoolExecutor(max_workers=min(workers, max(1, len(tasks))), mp_context=context,
                               initializer=_init_worker, initargs=(os.getpid(), stop))
    running: dict = {}
    interrupted = False

    def collect(future, task) -> str:
        try:
            outcome = future.result()
        except BrokenProcessPool:
            outcome = _failed(task, "worker process died (killed or out of memory)")
        if outcome["status"] != "pending":
            done(outcome)
        return outcome["status"]

    try:
        while waiting or running:
            while waiting and len(running) < workers and not interrupted:
                task = waiting.pop(0)
                running[pool.submit(_run_in_worker, task, threads)] = task
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                if collect(future, running.pop(future)) == "stopped":
                    interrupted = True  # a SIGINT reached a worker: stop handing out runs
            if interrupted:
                waiting.clear()
    except KeyboardInterrupt:
        # Ctrl-C reached the workers too: each running `train` checkpoints and stops at its
        # next step; a task not yet started sees `stop` and does not start.
        interrupted = True
        stop.set()
        for future, task in running.items():
            collect(future, task)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return interrupted


_STOP = None  # in a worker process only: the sweep's stop event, set by _init_worker


def _run_in_worker(task: dict, threads: int) -> dict:
    if _STOP is not None and _STOP.is_set():
        return {"name": task["name"], "status": "pending"}
    return run_one(task, threads)


def _failed(task: dict, error: str) -> dict:
    return {"name": task["name"], "status": "failed", "steps": 0, "seconds": None,
            "run_dir": None, "error": error}


def _init_worker(parent_pid: int, stop) -> None:
    """Idle workers ignore Ctrl-C (a running `train` installs its own graceful handler), and
    a worker whose sweep process died exits instead of training on unobserved."""
    global _STOP
    _STOP = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="sgdwalk-parent-watch").start()


# ---------------------------------------------------------------------------------------
# the progress view


class _ProgressView:
    """One bar over the sweep's runs and one line per run that ends."""

    def __init__(self, total: int, initial: int, name: str, show: bool):
        from tqdm.auto import tqdm

        self.show = show
        self.bar = tqdm(total=total, initial=initial, unit="run", desc=name, disable=not show,
                        dynamic_ncols=True)

    def finished(self, record: RunRecord) -> None:
        if self.show:
            took = f", {record.seconds:.0f} s" if record.seconds is not None else ""
            line = f"{record.status:9s} {record.name} ({record.steps} steps{took})"
            if record.error:
                line += f": {record.error}"
            self.bar.write(line)
        self.bar.update(1)

    def note(self, line: str) -> None:
        if self.show:
            self.bar.write(line)

    def close(self) -> None:
        self.bar.close()
