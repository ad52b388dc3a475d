"""One run of a sweep, wherever it executes: in the sweep's process, a worker process, or a
Ray task. What goes in (`RunTask`) and what comes back (`Outcome`) are plain data, so they
cross process and machine borders."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from sgdwalk.config import config_from_toml, config_to_toml
from sgdwalk.errors import RunLockedError, SgdwalkError

DONE = ("completed", "diverged")  # a run in either state is never trained again


@dataclass(frozen=True)
class RunTask:
    """Everything a worker needs to train one run of a sweep."""

    name: str  # the run's config name, unique within the sweep
    config: str  # the run config as TOML text
    root: str  # the study folder; the run goes to root/<name>-<id>
    meta: dict = field(default_factory=dict)  # study, variant, scale, point: into meta.json

    @classmethod
    def of(cls, entry, root) -> RunTask:
        """The task of a `StudyRun` whose run folder goes under `root`."""
        return cls(entry.config.name, config_to_toml(entry.config), str(root), entry.meta)


@dataclass(frozen=True)
class Outcome:
    """How one attempt at a run ended.

    status: completed | diverged | stopped (Ctrl-C: checkpointed, resumes next time) |
    failed (`error` says why: the run raised, or its worker died) | busy (another process
    holds the run's writer lock; nothing was written).
    """

    name: str
    status: str
    steps: int = 0
    seconds: float | None = None  # wall time of this attempt
    error: str | None = None  # failed or busy: one line
    already_done: bool = False  # finished (by another process) before this attempt began

    @classmethod
    def failed(cls, name: str, error: str) -> Outcome:
        return cls(name, "failed", error=error)


def run_one(task: RunTask, threads: int | None = None) -> Outcome:
    """Train one run of a sweep (or resume it); never raises for a failing run.

    threads: torch's intra-op threads for this process (None: leave them as they are). A
    run's floats depend on it, so meta.json records it as `torch_threads`.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    from sgdwalk.experiment import train

    started = time.perf_counter()
    try:
        config = config_from_toml(task.config)
        meta = {**task.meta, "torch_threads": torch.get_num_threads()}
        result = train(config, task.root, progress=False, meta=meta)
        outcome = Outcome(task.name, result.status, result.steps,
                          already_done=result.already_done)
    except RunLockedError as exc:  # another process is training it: the sweep comes back
        outcome = Outcome(task.name, "busy", error=one_line(exc))
    except Exception as exc:  # any failure of one run is recorded; the sweep goes on
        outcome = Outcome.failed(task.name, one_line(exc))
    seconds = round(time.perf_counter() - started, 3)
    return replace(outcome, seconds=seconds)


def one_line(exc: BaseException) -> str:
    """The first line of an error; unexpected exceptions keep their type's name."""
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    if isinstance(exc, SgdwalkError):
        return message or type(exc).__name__
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
