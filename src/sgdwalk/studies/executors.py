"""Executors: where a sweep's runs train, behind one interface.

    interrupted = executor.run(tasks, listener)

An executor trains each `RunTask` with `sgdwalk.studies.worker.run_one`, calls
`listener.started(task)` as it hands a run to a worker and `listener.finished(outcome)`
exactly once for every run it started (a failed run, a dead worker and a run stopped by
Ctrl-C included), and returns True when Ctrl-C stopped it. The sweep's manifest and its
progress view are such listeners. A run that ends "stopped" (Ctrl-C reached it) stops the
executor handing out further runs.

- `InProcess`: one run after another in this process (`--workers 1`): no process start-up,
  and Ctrl-C reaches `train`'s own handler directly.
- `LocalPool`: `workers` worker processes (spawn context), torch threads
  max(1, cores // workers) each. Each worker is its own one-process
  `concurrent.futures.ProcessPoolExecutor`, so a worker that dies (SIGKILL, the
  out-of-memory killer) breaks only its own pool: its run is recorded failed with the
  reason, that pool is rebuilt for the next run, and the other workers' runs go on.
- `RayExecutor` (`sgdwalk.studies.ray_backend`): Ray tasks, for clusters.

Ctrl-C in a terminal reaches the sweep and its workers alike (one process group): idle
workers ignore it, training ones checkpoint and stop at their next step, and the sweep
collects them; a second Ctrl-C kills the workers (their runs resume from their newest
checkpoints). On Linux a worker dies with the sweep's process (the kernel's parent-death
signal), so a killed sweep leaves no orphan training on unobserved.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from sgdwalk.studies.worker import Outcome, RunTask, one_line, run_one

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Listener(Protocol):
    """What an executor reports to the sweep."""

    def started(self, task: RunTask) -> None: ...

    def finished(self, outcome: Outcome) -> None: ...


class Executor(Protocol):
    def run(self, tasks: Sequence[RunTask], listener: Listener) -> bool:
        """Train `tasks`, reporting to `listener`; True when stopped by Ctrl-C."""
        ...


def make_executor(backend: str, workers: int, address: str | None = None) -> Executor:
    """The executor of `--backend` and `--workers` (checked by the caller)."""
    if backend == "ray":
        from sgdwalk.studies.ray_backend import RayExecutor

        return RayExecutor(workers, address)
    return LocalPool(workers) if workers > 1 else InProcess()


class InProcess:
    """Runs one after another in the calling process."""

    def run(self, tasks: Sequence[RunTask], listener: Listener) -> bool:
        for task in tasks:
            listener.started(task)
            try:
                outcome = run_one(task)
            except KeyboardInterrupt:  # outside train's handler (e.g. while reading data)
                outcome = Outcome(task.name, "stopped", error="interrupted")
            listener.finished(outcome)
            if outcome.status == "stopped":
                return True
        return False


class LocalPool:
    """`workers` spawned worker processes, one run each at a time (so on Ctrl-C no run
    waits in a queue)."""

    def __init__(self, workers: int):
        self.workers = workers
        self.threads = max(1, (os.cpu_count() or 1) // workers)

    def run(self, tasks: Sequence[RunTask], listener: Listener) -> bool:
        waiting = deque(tasks)
        pools: list = [None] * min(self.workers, len(tasks))  # per slot; None: to (re)build
        running: dict = {}  # future -> (slot, task)
        interrupted = False
        try:
            while running or (waiting and not interrupted):
                busy = {slot for slot, _ in running.values()}
                for slot in (s for s in range(len(pools)) if s not in busy):
                    if not waiting or interrupted:
                        break
                    task = waiting.popleft()
                    running[_submit(pools, slot, task, self.threads)] = (slot, task)
                    listener.started(task)
                for future in _first_done(running):
                    slot, task = running.pop(future)
                    outcome = _outcome(future, task, pools, slot)
                    listener.finished(outcome)
                    interrupted |= outcome.status == "stopped"  # Ctrl-C reached a worker
        except KeyboardInterrupt:
            interrupted = True
            _drain(running, pools, listener)
        finally:
            for pool in pools:
                if pool is not None:
                    pool.shutdown(wait=True, cancel_futures=True)
        return interrupted


def _new_pool():
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(os.getpid(),))


def _submit(pools: list, slot: int, task: RunTask, threads: int):
    """Hand `task` to the slot's worker, starting one where there is none or where the last
    one died while idle."""
    from concurrent.futures.process import BrokenProcessPool

    if pools[slot] is not None:
        try:
            return pools[slot].submit(run_one, task, threads)
        except BrokenProcessPool:
            pools[slot].shutdown(wait=True)
    pools[slot] = _new_pool()
    return pools[slot].submit(run_one, task, threads)


def _first_done(running: dict) -> set:
    from concurrent.futures import FIRST_COMPLETED, wait

    return wait(running, return_when=FIRST_COMPLETED).done


def _outcome(future, task: RunTask, pools: list, slot: int) -> Outcome:
    """The outcome of a finished future; a dead worker's pool is shut down and its slot
    emptied, to be rebuilt for the next run."""
    from concurrent.futures.process import BrokenProcessPool

    error = future.exception()
    if error is None:
        return future.result()
    if isinstance(error, BrokenProcessPool):
        processes = _processes(pools[slot])
        pools[slot].shutdown(wait=True)  # joins the dead worker, so its exit code is known
        pools[slot] = None
        return Outcome.failed(task.name, _death(processes))
    if isinstance(error, KeyboardInterrupt):  # a second Ctrl-C stopped `train` at once
        return Outcome(task.name, "stopped", error="stopped at once by a second Ctrl-C")
    return Outcome.failed(task.name, one_line(error))


def _drain(running: dict, pools: list, listener: Listener) -> None:
    """After Ctrl-C: collect the running runs as they checkpoint and stop. A second Ctrl-C
    stops waiting and kills the workers; their runs resume from their newest checkpoints."""
    try:
        for future, (slot, task) in list(running.items()):
            listener.finished(_outcome(future, task, pools, slot))
            del running[future]
    except KeyboardInterrupt:
        for pool in pools:
            for process in _processes(pool):
                process.kill()
        for _, task in running.values():
            listener.finished(Outcome(task.name, "stopped", error="worker killed by a second "
                                      "Ctrl-C"))


def _processes(pool) -> list:
    """The worker processes of a ProcessPoolExecutor. It has no public accessor; CPython
    keeps them in `_processes` (pid -> Process). Used only to say why a worker died and to
    kill workers on a second Ctrl-C."""
    return list((getattr(pool, "_processes", None) or {}).values()) if pool else []


def _death(processes: list) -> str:
    """Why a worker process ended, from its exit code, as one line."""
    codes = [p.exitcode for p in processes if p.exitcode is not None]
    if not codes:
        return "its worker process died"
    if codes[0] >= 0:
        return f"its worker process exited with status {codes[0]}"
    try:
        name = signal.Signals(-codes[0]).name
    except ValueError:
        name = f"signal {-codes[0]}"
    cause = " (kill -9, or the out-of-memory killer)" if name == "SIGKILL" else ""
    return f"its worker process was killed by {name}{cause}"


def _init_worker(parent: int) -> None:
    """Idle workers ignore Ctrl-C (a run's `train` installs its own graceful handler), and
    a worker dies with the sweep's process, so no orphan trains on unobserved."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        # sent when the thread that started this process ends: the sweep's main thread
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the sweep died before the request above
        os._exit(1)
