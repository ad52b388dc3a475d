"""Studies: commented TOML presets of run grids, expanded and trained as sweeps.

    study = load_study("lr-batch", scale="cpu", overrides=["train.epochs=2"])
    result = run_sweep(study, "runs", workers=2)        # runs/lr-batch/<name>-<id>
    table = load_sweep("runs/lr-batch")                 # runs x steps, config columns
    result = reproduce("runs/reproduce", scale="cpu")   # every study, then the claims

The study file format and its override rule are described in `sgdwalk.studies.spec`,
the expansion into checked run configs in `sgdwalk.studies.expand`; the sweep runner and its
backends in `sgdwalk.studies.sweep` and `sgdwalk.studies.ray_backend`; the whole reproduction
in `sgdwalk.studies.reproduce`.
"""

from sgdwalk.studies.expand import Study, StudyRun, expand, load_study
from sgdwalk.studies.reproduce import ReproduceResult, reproduce
from sgdwalk.studies.spec import StudyFile, read_study, study_names, study_summary
from sgdwalk.studies.sweep import RunRecord, SweepResult, run_one, run_studies, run_sweep
from sgdwalk.studies.tables import load_sweep, load_vectors

__all__ = [
    "ReproduceResult",
    "RunRecord",
    "Study",
    "StudyFile",
    "StudyRun",
    "SweepResult",
    "expand",
    "load_study",
    "load_sweep",
    "load_vectors",
    "read_study",
    "reproduce",
    "run_one",
    "run_studies",
    "run_sweep",
    "study_names",
    "study_summary",
]
