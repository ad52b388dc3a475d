"""Tables of a sweep: every run's rows with its config, study, variant and both time axes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sgdwalk.store import RunStore, find_runs, read_manifest, read_runs, run_meta

SWEEP_COLUMNS = ("study", "variant", "scale", "steps_per_epoch")


def load_sweep(root, names: list[str] | None = None) -> pd.DataFrame:
    """One long table of the runs at or under `root`: a run folder, a study folder
    (OUT/<study>) or a folder of study folders.

    One row per (run, step), wide in metric names. Columns: run_id, run_dir, status, study,
    variant, scale, steps_per_epoch, the config columns ("optim.lr", ...), step, epochs_done,
    then the metrics. The two time axes: `step` t counts updates (the iteration axis; -1 is
    theta_0), epochs_done = (t + 1) / steps_per_epoch (the epoch axis; 0 at step -1).
    status is the run's own, except "failed" where the sweep recorded that the run raised.
    names: only these metrics.
    """
    paths = find_runs(root)
    table = read_runs(paths, names=names)
    if not len(paths):
        return table.reindex(columns=[*table.columns[:3], *SWEEP_COLUMNS, "step",
                                      "epochs_done"])
    failed = _failed_runs({p.parent for p in paths})
    extra = pd.DataFrame([_sweep_info(p) for p in paths])
    table = table.merge(extra, on="run_dir", how="left")
    table.loc[table["run_dir"].isin(failed), "status"] = "failed"
    if table["steps_per_epoch"].notna().all():
        table["steps_per_epoch"] = table["steps_per_epoch"].astype("int64")
    epochs_done = ((table["step"] + 1) / table["steps_per_epoch"]).rename("epochs_done")
    table = pd.concat([table, epochs_done], axis=1)
    first = ["run_id", "run_dir", "status", *SWEEP_COLUMNS]
    config = [c for c in table.columns if "." in c and c not in first]
    rest = [c for c in table.columns if c not in first and c not in config
            and c not in ("step", "epochs_done")]
    return table[[*first, *config, "step", "epochs_done", *rest]].reset_index(drop=True)


def load_vectors(root, name: str) -> pd.DataFrame:
    """The per-step vector metric `name` (e.g. "line_probe") of every run at or under `root`:
    columns run_id, step, v0..v{K-1}; runs that never logged it contribute no rows."""
    frames = []
    for path in find_runs(root):
        with RunStore.open(path) as run:
            meta = run.meta()
            vectors = run.vectors(name)
        if len(vectors):
            frame = vectors.reset_index()
            frame.insert(0, "run_id", str(meta.get("run_id", path.name)))
            frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["run_id", "step"])
    out = pd.concat(frames, ignore_index=True, sort=False)
    return out.astype({"step": "int64"})


def _sweep_info(path: Path) -> dict:
    meta = run_meta(path)
    spe = meta.get("steps_per_epoch")
    return {"run_dir": str(path), "study": meta.get("study"), "variant": meta.get("variant"),
            "scale": meta.get("scale"), "steps_per_epoch": float(spe) if spe else np.nan}


def _failed_runs(roots) -> set[str]:
    """Run folders the sweep manifests of `roots` record as failed (the run raised)."""
    failed = set()
    for root in roots:
        for row in (read_manifest(root) or {}).get("runs", []):
            if row.get("status") == "failed" and row.get("dir"):
                failed.add(str(root / row["dir"]))
    return failed
