"""Results: stored runs held in memory as data frames, what `sgdwalk.store.load` returns.

    runs    one row per run (index run_id): run_dir, status, study, variant, scale,
            steps_per_epoch, last_step, epochs_done = (last_step + 1) / steps_per_epoch,
            the config columns ("optim.lr", ...; dotted, top-level keys as "config.name"),
            and final_<name> for each value of meta.json's `final` (the last evaluation)
    steps   one row per (run, step), sorted: run_id, step, steps_per_epoch,
            epochs_done = (step + 1) / steps_per_epoch (0 at step -1, k at the last update
            of epoch k), then one float64 column per scalar metric (NaN = not logged)
    vectors(name)  rows of one per-step vector metric: run_id, step, v0..v{K-1}

steps_per_epoch comes from meta.json, else from the stored `epoch` rows (median of
(step + 1) / epoch), else NaN (a run from one's own loop): then epochs_done is NaN too.
It is computed here once, for runs read from disk and for frames built by hand alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sgdwalk.errors import StoreError

# per-run columns before the config columns, in this order
RUN_FACTS = ("run_dir", "status", "study", "variant", "scale", "steps_per_epoch")
STEP_KEYS = ("run_id", "step", "steps_per_epoch", "epochs_done")


@dataclass(frozen=True, eq=False)
class Results:
    """Runs, steps, vectors, metas and configs of stored runs, all in memory (nothing is
    read after `load` returns). notes: what the reader left out or skipped, and why."""

    runs: pd.DataFrame
    steps: pd.DataFrame
    vector_frames: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    metas: Mapping[str, dict] = field(default_factory=dict)
    configs: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    study_claims: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    root: Path | None = None

    def vectors(self, name: str, run_id: str | None = None) -> pd.DataFrame:
        """Rows of vector metric `name` (of one run, or of every run): run_id, step,
        v0..v{K-1}; no rows when it was never logged."""
        frame = self.vector_frames.get(name)
        if frame is None:
            return pd.DataFrame(columns=["run_id", "step"])
        return frame if run_id is None else frame[frame["run_id"] == run_id]

    def vector_names(self) -> list[str]:
        return sorted(self.vector_frames)

    def meta(self, run_id: str) -> dict:
        """The run's meta.json (versions, status, ...); {} when unknown."""
        return self.metas.get(run_id, {})

    def config_text(self, run_id: str) -> str:
        """The run's resolved config.toml; '' when unknown."""
        return self.configs.get(run_id, "")

    def table(self, long: bool = False) -> pd.DataFrame:
        """`steps` with each run's facts and config joined, to group rows by a config key:
        run_id, run_dir, status, study, variant, scale, steps_per_epoch, the config columns,
        step, epochs_done, then one column per metric (one row per (run, step)), or with
        long=True the columns name and value (one row per logged value; NaN = missing and
        never logged read the same, so neither has a row)."""
        facts = [c for c in self.runs.columns if c in RUN_FACTS or "." in c]
        metrics = [c for c in self.steps.columns if c not in STEP_KEYS]
        clash = sorted(set(facts) & set(metrics))
        if clash:
            raise StoreError(f"expected metric names distinct from run columns, got {clash}")
        joined = self.steps.join(self.runs[[c for c in facts if c != "steps_per_epoch"]],
                                 on="run_id")
        head = ["run_id", *facts, "step", "epochs_done"]
        if not long:
            return joined[[*head, *metrics]]
        rows = joined.melt(id_vars=head, value_vars=metrics, var_name="name")
        rows = rows.dropna(subset=["value"]).sort_values(["run_id", "step", "name"],
                                                         kind="stable")
        return rows.reset_index(drop=True)

    def subset(self, run_ids) -> Results:
        """The same results restricted to `run_ids`."""
        keep = {str(r) for r in run_ids}
        ids = [r for r in self.runs.index if r in keep]
        return Results(
            self.runs.loc[ids], self.steps[self.steps["run_id"].isin(keep)],
            {n: v[v["run_id"].isin(keep)] for n, v in self.vector_frames.items()},
            {k: v for k, v in self.metas.items() if k in keep},
            {k: v for k, v in self.configs.items() if k in keep},
            self.notes, self.study_claims, self.root)

    @classmethod
    def from_frames(cls, table: pd.DataFrame, vectors: Mapping | None = None,
                    metas: Mapping | None = None, configs: Mapping | None = None,
                    study_claims: Mapping | None = None) -> Results:
        """Results from a frame built by hand (tests, notebooks): one row per (run, step)
        with run_id, step, the metrics, and optionally the run facts (status,
        steps_per_epoch, ...) and config columns (dotted), constant within a run.
        vectors: name -> (run_id, step, v0..) frame; metas / configs: run_id -> meta dict /
        config TOML text; study_claims: study -> the claim ids its runs are meant for."""
        table = table.copy()
        if "run_id" not in table.columns:
            table["run_id"] = "run"
        table["run_id"] = table["run_id"].astype(str)
        facts = [c for c in table.columns if c in RUN_FACTS or "." in c]
        runs = table.groupby("run_id", sort=True)[facts].first() if facts else \
            pd.DataFrame(index=pd.Index(sorted(table["run_id"].unique()), name="run_id"))
        metrics = [c for c in table.columns
                   if c not in facts and c not in STEP_KEYS and c != "last_step"]
        return assemble(runs, table[["run_id", "step", *metrics]], dict(vectors or {}),
                        dict(metas or {}), dict(configs or {}), (),
                        {str(k): tuple(v) for k, v in (study_claims or {}).items()}, None)


def assemble(runs: pd.DataFrame, steps: pd.DataFrame, vectors: dict, metas: dict,
             configs: dict, notes: tuple, study_claims: dict, root: Path | None) -> Results:
    """Results from per-run facts and config (index run_id; steps_per_epoch may be missing
    or NaN) and the scalar rows (run_id, step, metrics): the one place steps_per_epoch,
    last_step and both epochs_done are computed."""
    steps = steps.astype({"step": "int64"}).sort_values(["run_id", "step"], kind="stable")
    metrics = sorted(c for c in steps.columns if c not in ("run_id", "step"))
    runs = runs.sort_index()
    runs.index.name = "run_id"
    known = pd.to_numeric(runs["steps_per_epoch"], errors="coerce") \
        if "steps_per_epoch" in runs.columns else pd.Series(np.nan, index=runs.index)
    rows = dict(tuple(steps.groupby("run_id", sort=False)))
    spe = pd.Series([_steps_per_epoch(known[r], rows.get(r)) for r in runs.index],
                    index=runs.index, dtype="float64")
    last = steps.groupby("run_id")["step"].max().reindex(runs.index)
    for column, default in (("run_dir", ""), ("status", "unknown"), ("study", None),
                            ("variant", None), ("scale", None)):
        runs[column] = runs[column].fillna(default) if column in runs.columns else default
    runs["steps_per_epoch"] = spe
    runs["last_step"] = last.fillna(-1).astype("int64")
    runs["epochs_done"] = (runs["last_step"] + 1) / spe
    config = sorted(c for c in runs.columns if "." in c)
    final = sorted(c for c in runs.columns if c.startswith("final_"))
    runs = runs[[*RUN_FACTS, "last_step", "epochs_done", *config, *final]]
    step_spe = steps["run_id"].map(spe).astype("float64")
    out = pd.DataFrame({"run_id": steps["run_id"].to_numpy(), "step": steps["step"].to_numpy(),
                        "steps_per_epoch": step_spe.to_numpy(),
                        "epochs_done": ((steps["step"] + 1) / step_spe).to_numpy()})
    out = pd.concat([out, steps[metrics].astype("float64").reset_index(drop=True)], axis=1)
    return Results(runs, out, vectors, metas, configs, tuple(notes), study_claims, root)


def _steps_per_epoch(known: float, rows: pd.DataFrame | None) -> float:
    """meta.json's value, else the median of (step + 1) / epoch over the rows where an
    epoch ended (the trainer logs `epoch` = k at the last update of epoch k), else NaN."""
    if np.isfinite(known) and known > 0:
        return float(known)
    if rows is not None and "epoch" in rows.columns:
        ends = rows[(rows["step"] >= 0) & (rows["epoch"] > 0)]
        if len(ends):
            return float(np.median((ends["step"] + 1) / ends["epoch"]))
    return float("nan")
