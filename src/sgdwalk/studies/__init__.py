"""Studies: commented TOML presets of run grids, expanded into run configs and trained as
sweeps.

    study = load_study("lr-batch", scale="cpu", overrides=["train.epochs=2"])
    result = run_sweep(study, "runs", workers=2)        # runs/lr-batch/<name>-<id>
    results = sgdwalk.store.load("runs/lr-batch")       # runs, steps, vectors
    result = reproduce("runs/reproduce", scale="cpu")   # every study, then the claims

The modules, in the order a sweep uses them: `spec` (the study file and its one override
rule), `expand` (a study at one scale -> checked run configs), `execute` (the sweep:
`run_sweep`, `run_studies`), `ledger` (run records and sweep.json), `executors` (one
interface: in this process, a local process pool, or `ray_backend`), `worker` (one run,
wherever it executes), `progress` (the bar), and `reproduce` (every study, then the claims).
"""

from sgdwalk.studies.execute import run_studies, run_sweep
from sgdwalk.studies.expand import Study, StudyRun, expand, load_study
from sgdwalk.studies.ledger import RunRecord, SweepResult
from sgdwalk.studies.reproduce import ReproduceResult, reproduce
from sgdwalk.studies.spec import StudyFile, read_study, study_names, study_summary
from sgdwalk.studies.worker import Outcome, RunTask, run_one

__all__ = [
    "Outcome",
    "ReproduceResult",
    "RunRecord",
    "RunTask",
    "Study",
    "StudyFile",
    "StudyRun",
    "SweepResult",
    "expand",
    "load_study",
    "read_study",
    "reproduce",
    "run_one",
    "run_studies",
    "run_sweep",
    "study_names",
    "study_summary",
]
