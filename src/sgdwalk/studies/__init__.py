"""Studies: commented TOML presets of run grids, expanded and trained as sweeps.

    study = load_study("lr-batch", scale="cpu", overrides=["train.epochs=2"])
    result = run_sweep(study, "runs", workers=2)        # runs/lr-batch/<name>-<id>
    table = load_sweep("runs/lr-batch")                 # runs x steps, config columns

The study file format is described in `sgdwalk.studies.spec`; the sweep runner and its
backends in `sgdwalk.studies.sweep` and `sgdwalk.studies.ray_backend`.
"""

from sgdwalk.studies.spec import Study, StudyRun, load_study, study_names, study_summary
from sgdwalk.studies.sweep import RunRecord, SweepResult, run_one, run_sweep
from sgdwalk.studies.tables import load_sweep, load_vectors

__all__ = [
    "RunRecord",
    "Study",
    "StudyRun",
    "SweepResult",
    "load_study",
    "load_sweep",
    "load_vectors",
    "run_one",
    "run_sweep",
    "study_names",
    "study_summary",
]
