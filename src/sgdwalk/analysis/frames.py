"""The frames analysis and plots read, and the helpers that read them. Nothing here opens a
file or imports torch: runs come in as `sgdwalk.store.Results` (from `sgdwalk.store.load`)
or as frames built by hand.

`Tables.steps` is the store's step table with each run's columns joined
(`Results.table()`): one row per (run, step), wide in metric names (see docs/metrics.md),
with run_id, run_dir, status, study, variant, scale, steps_per_epoch, the config columns
("optim.lr", ...), step and epochs_done = (step + 1) / steps_per_epoch. `Tables.runs` is
the store's run table plus what analysis groups runs by: algorithm, lr, batch_size, seed,
diverged, failed, `condition` (shared by seeds) and `label`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sgdwalk.store.results import Results

# Config keys that do not change the trajectory: runs differing only in these (and in
# train.seed) are seeds of one *condition*. walk.* keys only choose what is measured;
# probes never change the trajectory (tests/train prove it bit for bit).
NOT_CONDITION = frozenset({
    "train.seed", "config.name", "train.progress", "train.device", "train.flush_every",
    "train.checkpoint_every", "train.keep_checkpoints", "train.eval_every",
    "train.eval_train", "data.root", "data.download", "data.url",
})
LINE_SOURCES = ("probe", "batch", "heldout")  # preference order for line-curve claims
LR, BATCH, ALGORITHM, SEED = "optim.lr", "optim.batch_size", "optim.algorithm", "train.seed"


class Tables:
    """Runs and steps for analysis: `steps` (runs x steps), `runs` (one row per run, with
    conditions and labels), per-step vectors (`vectors(name)`: run_id, step, v0..v{K-1}),
    each run's meta and config text, the claims each study is meant for, and the reader's
    notes. Built from a `Results`; holds no files."""

    def __init__(self, results: Results):
        self.results = results
        self.steps = results.table()  # so a frame of these steps rebuilds these tables
        self.runs = runs_table(results.runs, results.steps)
        self.root = results.root
        self.notes = results.notes
        # study name -> the claims it is meant to decide (its sweep.json's `claims`)
        self.study_claims = dict(results.study_claims)

    @classmethod
    def from_frames(cls, steps: pd.DataFrame, vectors: dict | None = None,
                    metas: dict | None = None, configs: dict | None = None,
                    study_claims: dict | None = None) -> Tables:
        """Tables from frames built by hand (see `sgdwalk.store.Results.from_frames`)."""
        return cls(Results.from_frames(steps, vectors, metas, configs, study_claims))

    def subset(self, run_ids) -> Tables:
        """The same tables restricted to `run_ids`."""
        return Tables(self.results.subset(run_ids))

    def vectors(self, name: str) -> pd.DataFrame:
        """Rows of one vector metric for every run: columns run_id, step, v0..v{K-1}."""
        return self.results.vectors(name)

    def loaded_vectors(self) -> list[str]:
        """Names of the vector metrics held."""
        return self.results.vector_names()

    def meta(self, run_id: str) -> dict:
        """The run's meta.json (versions, status, ...); {} when unknown."""
        return self.results.meta(run_id)

    def config_text(self, run_id: str) -> str:
        """The run's resolved config.toml; '' when unknown."""
        return self.results.config_text(run_id)


def config_columns(frame: pd.DataFrame) -> list[str]:
    """Config columns are dotted ("optim.lr"); metric names never contain a dot."""
    return [c for c in frame.columns if "." in c]


def runs_table(runs: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """The store's run table (index run_id) with what analysis groups runs by: diverged
    (status "diverged" or a `diverged` row), failed (the sweep recorded that the run
    raised), algorithm, lr, batch_size, seed, `condition` (an integer shared by seeds: runs
    whose configs differ only in train.seed and NOT_CONDITION keys) and `label` (e.g.
    "sgd lr=0.1 B=32")."""
    cfg = config_columns(runs)
    runs = runs.copy()
    div = (steps.groupby("run_id")["diverged"].max() == 1) if "diverged" in steps.columns \
        else pd.Series(False, index=runs.index)
    runs["diverged"] = (runs["status"] == "diverged") | div.reindex(runs.index, fill_value=False)
    runs["failed"] = runs["status"] == "failed"
    runs["algorithm"] = runs[ALGORITHM].fillna("sgd") if ALGORITHM in runs.columns else "sgd"
    runs["lr"] = runs[LR].astype(float) if LR in runs.columns else np.nan
    runs["batch_size"] = runs[BATCH].astype(float) if BATCH in runs.columns else np.nan
    runs["seed"] = runs[SEED] if SEED in runs.columns else np.nan
    keys = [c for c in cfg if c not in NOT_CONDITION and not c.startswith("walk.")]
    codes: dict[tuple, int] = {}
    runs["condition"] = [codes.setdefault(_key(runs.loc[r], keys), len(codes))
                         for r in runs.index]
    runs["label"] = [_label(runs.loc[r]) for r in runs.index]
    dup = runs.groupby("label")["condition"].transform("nunique") > 1
    runs.loc[dup, "label"] = runs.loc[dup, "label"] + " #" + runs.loc[dup, "condition"].astype(str)
    return runs


def _key(row: pd.Series, keys: list[str]) -> tuple:
    return tuple(_hashable(row[k]) for k in keys)


def _hashable(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, np.ndarray)):
        return tuple(value)
    return value


def _label(row: pd.Series) -> str:
    alg = row["algorithm"]
    parts = [str(alg)]
    if np.isfinite(row["lr"]):  # not recorded for a run from one's own loop
        parts.append(f"lr={row['lr']:g}")
    if alg == "sgd" and np.isfinite(row["batch_size"]):
        parts.append(f"B={int(row['batch_size'])}")
    return " ".join(parts)


def family_key(runs: pd.DataFrame, vary: tuple[str, ...]) -> pd.Series:
    """Per run, the key of its *family*: the condition's config with the `vary` columns
    removed. Conditions of one family differ only in the `vary` columns."""
    cfg = [c for c in config_columns(runs)
           if c not in NOT_CONDITION and not c.startswith("walk.") and c not in vary]
    codes: dict[tuple, int] = {}
    return pd.Series([codes.setdefault(_key(runs.loc[r], cfg), len(codes)) for r in runs.index],
                     index=runs.index)


def has_data(steps: pd.DataFrame, column: str, run_ids=None) -> bool:
    """True when `column` exists and holds a finite value (in those runs)."""
    if column not in steps.columns:
        return False
    col = steps[column] if run_ids is None else steps.loc[steps["run_id"].isin(run_ids), column]
    return bool(np.isfinite(col.to_numpy(dtype=float)).any())


def pick_line_source(steps: pd.DataFrame, suffixes: tuple[str, ...], run_ids=None) -> str | None:
    """The first line source (probe, batch, heldout) whose line_S_<suffix> columns all hold data."""
    for src in LINE_SOURCES:
        if all(has_data(steps, f"line_{src}_{s}", run_ids) for s in suffixes):
            return src
    return None


def height_column(steps: pd.DataFrame, run_ids=None) -> str | None:
    """The height to compare runs on: line_S_height of the first line source with data,
    else the economy model's econ_height (every step, on the step's batch); None if neither."""
    src = pick_line_source(steps, ("height",), run_ids)
    if src is not None:
        return f"line_{src}_height"
    return "econ_height" if has_data(steps, "econ_height", run_ids) else None


def series(steps: pd.DataFrame, run_id: str, *columns: str) -> pd.DataFrame:
    """Rows step >= 0 of one run where every column is finite: columns step, *columns
    (no rows when a column does not exist)."""
    if not all(c in steps.columns for c in columns):
        return pd.DataFrame({"step": pd.Series(dtype="int64"),
                             **{c: pd.Series(dtype=float) for c in columns}})
    rows = steps.loc[(steps["run_id"] == run_id) & (steps["step"] >= 0), ["step", *columns]]
    ok = np.isfinite(rows[list(columns)].to_numpy(dtype=float)).all(axis=1)
    return rows[ok]


def value_at(steps: pd.DataFrame, run_id: str, column: str, at_steps, window: int | None = None):
    """The last finite value of `column` at a step <= each of `at_steps` (and > step - window
    when given); NaN where there is none. Returns float64 array."""
    rows = series(steps, run_id, column)
    s, v = rows["step"].to_numpy(), rows[column].to_numpy(dtype=float)
    at = np.asarray(at_steps, dtype=np.int64)
    pos = np.searchsorted(s, at, side="right") - 1
    out = np.where(pos >= 0, v[np.clip(pos, 0, None)] if len(v) else np.nan, np.nan)
    if window is not None and len(s):
        out = np.where((pos >= 0) & (s[np.clip(pos, 0, None)] > at - window), out, np.nan)
    return out.astype(float)


def epochs_completed(steps: pd.DataFrame, run_id: str, column: str) -> int:
    """Whole epochs whose last step holds (or is preceded within the epoch by) a finite
    value of `column`."""
    rows = series(steps, run_id, column)
    spe = _spe(steps, run_id)
    if not len(rows) or not spe:
        return 0
    return int((rows["step"].max() + 1) // spe)


def _spe(steps: pd.DataFrame, run_id: str) -> int:
    v = steps.loc[steps["run_id"] == run_id, "steps_per_epoch"].iloc[0]
    return int(v) if np.isfinite(v) and v > 0 else 0


def at_epoch_ends(steps: pd.DataFrame, run_id: str, column: str, epochs) -> np.ndarray:
    """The value of `column` at the end of each (1-based) epoch: the last finite value
    logged within that epoch; NaN when none."""
    spe = _spe(steps, run_id)
    if not spe:
        return np.full(len(epochs), np.nan)
    ends = np.asarray(epochs, dtype=np.int64) * spe - 1
    return value_at(steps, run_id, column, ends, window=spe)
