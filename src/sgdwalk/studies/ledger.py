"""The sweep's ledger: what it knows about each run, kept in each study's sweep.json.

`Ledger` is a listener of the executors (`started(task)`, `finished(outcome)`): on every
event it updates that run's `RunRecord` and rewrites the study's manifest atomically through
`sgdwalk.store`, so sweep.json always says where the sweep stands. `SweepResult` is what a
sweep returns, one per study.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sgdwalk.store import read_manifest, run_meta, run_status, write_manifest
from sgdwalk.store.identity import now, run_dir_name, run_id
from sgdwalk.studies.expand import Study, StudyRun
from sgdwalk.studies.worker import DONE, Outcome, RunTask


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
    """The outcome of a sweep of one study: one record per run, in the study's order."""

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
        """A few lines: the counts by status, each failed or diverged run, and, when runs
        are left, that the same command resumes them."""
        skipped = sum(r.skipped for r in self.records)
        elsewhere = sum(r.elsewhere for r in self.records)
        other = f"; {elsewhere} finished by another process" if elsewhere else ""
        lines = [f"{self.study.name} ({self.study.scale}, {self.backend}): {len(self.records)} "
                 f"runs: {_counts(self.records)}; {skipped} already done{other}; "
                 f"{self.seconds:.0f} s"]
        for r in self.records:
            if r.status == "failed":
                lines.append(f"  failed   {r.name}: {r.error}")
            elif r.status == "diverged" and not r.skipped:
                lines.append(f"  diverged {r.name} at step {r.steps}")
        if self.interrupted or any(r.status not in DONE for r in self.records):
            lines.append(f"  {not_finished(self.records)}")
        return "\n".join(lines)


def _counts(records) -> str:
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def not_finished(records) -> str:
    """"not finished: 1 failed, 2 stopped; run the same command again to resume them"."""
    left = [r for r in records if r.status not in DONE]
    return (f"not finished: {_counts(left) or 'interrupted'}; run the same command again to "
            "resume them (finished runs are skipped)")


@dataclass
class _Book:
    """One study's part of the ledger: its folder, manifest head and records."""

    study: Study
    root: Path
    head: dict  # sweep.json's fields other than `updated` and `runs`
    records: list[RunRecord]

    def write(self) -> None:
        write_manifest(self.root, {**self.head, "updated": now(),
                                   "runs": [r.row() for r in self.records]})


class Ledger:
    """The records of every run of one or more studies, and their manifests."""

    def __init__(self, studies: list[Study], out, backend: str, workers: int):
        self.books: list[_Book] = []
        self.owner: dict = {}  # run name -> (book, record, StudyRun)
        for study in studies:
            root = Path(out) / study.name
            old = read_manifest(root) or {}
            old_rows = {r.get("dir"): r for r in old.get("runs", []) if isinstance(r, dict)}
            head = {"study": study.name, "scale": study.scale, "source": study.source,
                    "overrides": list(study.overrides), "claims": list(study.claims),
                    "description": study.description, "backend": backend,
                    "workers": workers, "started": old.get("started", now())}
            book = _Book(study, root, head, [_record(e, root, old_rows) for e in study.entries])
            self.books.append(book)
            for record, entry in zip(book.records, study.entries):
                self.owner[record.name] = (book, record, entry)
            book.write()

    @property
    def total(self) -> int:
        return len(self.owner)

    def todo(self) -> list[RunTask]:
        """The runs not done yet, in study order, as tasks for an executor."""
        return [self.task(name) for name, (_, record, _) in self.owner.items()
                if not record.skipped]

    def task(self, name: str) -> RunTask:
        book, _, entry = self.owner[name]
        return RunTask.of(entry, book.root)

    def run_dir(self, name: str) -> Path:
        book, record, _ = self.owner[name]
        return book.root / record.dir

    def started(self, task: RunTask) -> None:
        book, record, _ = self.owner[task.name]
        record.status = "running"
        book.write()

    def finished(self, outcome: Outcome) -> None:
        book, record, _ = self.owner[outcome.name]
        if outcome.status == "busy":  # another process writes it: the sweep waits for it
            record.status = "running"
        else:
            record.status, record.steps = outcome.status, outcome.steps
            record.seconds, record.error = outcome.seconds, outcome.error
            record.elsewhere = outcome.already_done
        book.write()

    def results(self, seconds: float, interrupted: bool, backend: str) -> list[SweepResult]:
        """One SweepResult per study, in order, after a last write of each manifest."""
        out = []
        for book in self.books:
            book.write()
            stopped = interrupted or any(r.status == "stopped" for r in book.records)
            out.append(SweepResult(book.root, book.study, book.records, seconds, stopped,
                                   backend))
        return out


def _record(entry: StudyRun, root: Path, old_rows: dict) -> RunRecord:
    """The record of a run as its folder has it: done (skipped), stopped, or new."""
    folder = run_dir_name(entry.config)
    status = run_status(root / folder)
    record = RunRecord(entry.config.name, run_id(entry.config), folder, entry.variant,
                       dict(entry.point))
    if status in DONE:
        record.status, record.skipped = status, True
        record.steps = int(run_meta(root / folder).get("steps_done", 0))
        record.seconds = old_rows.get(folder, {}).get("seconds")
    elif status is not None:
        record.status = "stopped"  # started before and not finished: resumes from there
    return record
