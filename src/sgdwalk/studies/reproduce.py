"""Reproduce the study: every shipped study of the paper at one scale, then claims C1-C12 on
all of them (the field's edge-of-stability and catapult, and issue 17's river-valley, only
when named: `--studies`).

    result = reproduce("runs/reproduce", scale="cpu", workers=2)
    print(result.table)      # the claims table, as `sgdwalk claims` prints it
    result.claims_path       # OUT/claims.json
    result.report_path       # OUT/report.html

The studies' runs go to OUT/<study>/<name>-<id> exactly as `sgdwalk sweep` puts them, and
they train as one sweep (one pool of workers, one progress view): a run already done is
skipped, an interrupted one resumes from its checkpoint, so the same call continues a
stopped reproduction. Each claim then reads the runs of the studies meant for it (see
`sgdwalk.analysis.scope.meant_for`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from sgdwalk.errors import ConfigError
from sgdwalk.studies.execute import run_studies
from sgdwalk.studies.expand import load_study
from sgdwalk.studies.ledger import SweepResult, not_finished
from sgdwalk.studies.spec import study_names

DEFAULT_OUT = "runs/reproduce"
# the order they train in: the studies with the longest runs first, so the pool's last
# runs are short ones
STUDIES = ("trajectory", "flatness", "noise", "barriers", "alignment", "lr-batch")
# shipped studies beyond the paper's claims, trained only when named (`--studies`, `sweep`)
EXTENSIONS = ("edge-of-stability", "catapult", "river-valley")
CLAIMS_FILE = "claims.json"
REPORT_FILE = "report.html"


@dataclass
class ReproduceResult:
    """What `reproduce` did: one SweepResult per study, then the claims and the report
    (None when the sweep was interrupted: nothing is decided on a partial reproduction)."""

    root: Path
    sweeps: list[SweepResult]
    claims: list = field(default_factory=list)  # sgdwalk.analysis Claim objects
    table: str = ""  # the claims as the terminal table
    claims_path: Path | None = None
    report_path: Path | None = None
    seconds: float = 0.0

    @property
    def interrupted(self) -> bool:
        return any(s.interrupted for s in self.sweeps)

    @property
    def ok(self) -> bool:
        """Every run of every study completed or diverged (both are results)."""
        return all(s.ok for s in self.sweeps)

    def summary(self) -> str:
        """One line per study (runs by status, summed run time), then failures."""
        lines = []
        for s in self.sweeps:
            counts: dict[str, int] = {}
            for r in s.records:
                counts[r.status] = counts.get(r.status, 0) + 1
            parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            busy = sum(r.seconds or 0.0 for r in s.records if not r.skipped)
            skipped = sum(r.skipped for r in s.records)
            lines.append(f"{s.study.name:11s} {len(s.records):3d} runs: {parts}; "
                         f"{skipped} already done; {busy:.0f} s of run time")
            lines += [f"  failed   {r.name}: {r.error}" for r in s.records
                      if r.status == "failed"]
        lines.append(f"{'total':11s} {sum(len(s.records) for s in self.sweeps):3d} runs; "
                     f"{self.seconds:.0f} s wall")
        if self.interrupted or not self.ok:
            lines.append(f"  {not_finished([r for s in self.sweeps for r in s.records])}")
        return "\n".join(lines)


def parse_studies(text: str | None) -> list[str]:
    """"a,b" -> the shipped study names it lists; None -> every shipped study but the
    EXTENSIONS (those of STUDIES first, in that order)."""
    known = study_names()
    if text is None:
        return [s for s in STUDIES if s in known] + [s for s in known
                                                     if s not in STUDIES + EXTENSIONS]
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in known]
    if not names or bad or len(set(names)) != len(names):
        got = ", ".join(bad) if bad else text
        raise ConfigError(f"studies: expected distinct names among {', '.join(known)}, "
                          f"separated by commas, got {got!r}")
    return names


def reproduce(out=DEFAULT_OUT, scale: str = "cpu", studies: list[str] | None = None,
              workers: int | None = None, backend: str = "local", address: str | None = None,
              overrides=(), progress: bool | None = None, n_boot: int | None = None
              ) -> ReproduceResult:
    """Run every study at `scale` into `out`, then decide the claims on all of them together
    and write OUT/claims.json and OUT/report.html.

    Args:
        out: root folder; study S goes to out/S (as `sgdwalk sweep S --out OUT`).
        scale: "cpu", "fashion" or "paper".
        studies: shipped study names (default: all six).
        workers: runs trained at once (default: the number of CPU cores).
        backend, address: as `run_sweep`.
        overrides: `--set KEY=VALUE` strings applied to every study (e.g.
            "train.max_steps=4" shrinks every run).
        progress: one bar over every run (default: on).
        n_boot: bootstrap replicates per claim (default: the analysis' N_BOOT).

    Every study is expanded and validated before anything trains. Raises ConfigError on a
    bad study name, scale, override, backend or worker count.
    """
    from sgdwalk.analysis.decide import N_BOOT

    started = time.perf_counter()
    names = list(studies) if studies is not None else parse_studies(None)
    if workers is None:
        workers = os.cpu_count() or 1
    loaded = [load_study(name, scale=scale, overrides=list(overrides)) for name in names]
    root = Path(out)
    sweeps = run_studies(loaded, root, workers=workers, backend=backend, address=address,
                         progress=progress, label="reproduce")
    result = ReproduceResult(root, sweeps)
    if not result.interrupted:
        _decide(result, N_BOOT if n_boot is None else n_boot)
    result.seconds = time.perf_counter() - started
    return result


def _decide(result: ReproduceResult, n_boot: int) -> None:
    """Claims on the runs of these studies (nothing else under OUT), then the report."""
    from sgdwalk.analysis import decide_claims, format_claims, write_claims_json
    from sgdwalk.analysis.frames import Tables
    from sgdwalk.plots.report import write_report
    from sgdwalk.store import find_runs, load

    # each study's folder, as a path within OUT (load joins it to OUT: a relative OUT such
    # as the default runs/reproduce must not be joined twice)
    done = [s.root.relative_to(result.root) for s in result.sweeps
            if s.root.is_dir() and find_runs(s.root)]
    if not done:
        return
    tables = Tables(load(result.root, within=done))  # each study's claims: its sweep.json
    result.claims = decide_claims(tables, n_boot=n_boot)
    result.table = format_claims(result.claims)
    result.claims_path = write_claims_json(result.claims, result.root / CLAIMS_FILE)
    result.report_path = write_report(tables, result.root / REPORT_FILE, n_boot=n_boot,
                                      claims=result.claims)
