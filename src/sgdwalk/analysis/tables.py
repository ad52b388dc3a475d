"""The tables analysis and plots work from: runs x steps, one row per run, and vectors.

Everything downstream of training reads one long table, `Tables.steps`: one row per
(run, step), wide in metric names (see docs/metrics.md), with the run's config columns
("optim.lr", "optim.batch_size", "optim.algorithm", "train.seed", ...) and run columns
(run_id, run_dir, status, steps_per_epoch, epochs_done = (step + 1) / steps_per_epoch).
`load(dir)` builds it from a run folder or a folder of runs; `Tables.from_frames` wraps
tables built by hand (tests, notebooks). Nothing here imports torch.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from sgdwalk.errors import StoreError

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
    """A run or a sweep as tables: `steps` (runs x steps), `runs` (one row per run), and
    per-step vectors (`vectors(name)`: run_id, step, v0..v{K-1}) read on demand."""

    def __init__(self, steps: pd.DataFrame, *, vectors: dict | None = None,
                 metas: dict | None = None, configs: dict | None = None,
                 root: Path | None = None, study_claims: dict | None = None):
        self.steps = prepare(steps)
        self.runs = runs_table(self.steps)
        self.root = root
        # study name -> the claims it is meant to decide (its sweep.json's `claims`)
        self.study_claims = {str(k): tuple(v) for k, v in (study_claims or {}).items()}
        self._vectors = dict(vectors or {})
        self._metas = dict(metas or {})
        self._configs = dict(configs or {})
        self._from_disk = root is not None

    @classmethod
    def from_frames(cls, steps: pd.DataFrame, vectors: dict | None = None,
                    metas: dict | None = None, configs: dict | None = None,
                    study_claims: dict | None = None) -> Tables:
        """Tables from frames built by hand. vectors: name -> (run_id, step, v0..) frame;
        metas: run_id -> meta dict; configs: run_id -> config TOML text; study_claims:
        study name -> the claim ids its runs are meant for (see `common.meant_for`)."""
        return cls(steps, vectors=vectors, metas=metas, configs=configs,
                   study_claims=study_claims)

    def subset(self, run_ids) -> Tables:
        """The same tables restricted to `run_ids` (vectors read so far, metas and configs
        carried over; the rest is still read on demand)."""
        ids = {str(r) for r in run_ids}
        sub = Tables(self.steps[self.steps["run_id"].isin(ids)], root=self.root,
                     metas={k: v for k, v in self._metas.items() if k in ids},
                     configs={k: v for k, v in self._configs.items() if k in ids},
                     study_claims=self.study_claims)
        sub._vectors = {name: v[v["run_id"].isin(ids)] for name, v in self._vectors.items()}
        sub._from_disk = self._from_disk
        return sub

    def vectors(self, name: str) -> pd.DataFrame:
        """Rows of one vector metric for every run: columns run_id, step, v0..v{K-1}."""
        if name not in self._vectors:
            frames = []
            if self._from_disk:
                from sgdwalk.store import RunStore

                for run_id, run_dir in self.runs["run_dir"].items():
                    with RunStore.open(run_dir) as run:
                        table = run.vectors(name)
                    if len(table):
                        table = table.reset_index()
                        table.insert(0, "run_id", run_id)
                        frames.append(table)
            self._vectors[name] = (pd.concat(frames, ignore_index=True) if frames
                                   else pd.DataFrame(columns=["run_id", "step"]))
        return self._vectors[name]

    def loaded_vectors(self) -> list[str]:
        """Names of the vector metrics held in memory (given, or read so far)."""
        return sorted(self._vectors)

    def meta(self, run_id: str) -> dict:
        """The run's meta.json (versions, status, ...); {} when unknown."""
        if run_id not in self._metas and self._from_disk:
            from sgdwalk.store import RunStore

            with RunStore.open(self.runs.loc[run_id, "run_dir"]) as run:
                self._metas[run_id] = run.meta()
        return self._metas.get(run_id, {})

    def config_text(self, run_id: str) -> str:
        """The run's resolved config.toml; '' when unknown."""
        if run_id not in self._configs and self._from_disk:
            from sgdwalk.store import RunStore

            with RunStore.open(self.runs.loc[run_id, "run_dir"]) as run:
                self._configs[run_id] = run.config_text()
        return self._configs.get(run_id, "")


def load(path) -> Tables:
    """The tables of a run folder or of a folder of runs (a sweep), read through the store.

    Uses `sgdwalk.studies.load_sweep` when the studies package provides it, else reads each
    run with `sgdwalk.store.read_runs` and adds the run columns from meta.json.
    Raises StoreError when `path` holds no run.
    """
    from sgdwalk.store import find_runs

    path = Path(path)
    dirs = find_runs(path)
    if not dirs:
        raise StoreError(f"{path}: expected a run folder or a folder of runs, got none")
    steps = _load_sweep(path)
    if steps is None:
        steps = _read(dirs)
    return Tables(steps, root=path, study_claims=manifest_claims(dirs))


def manifest_claims(run_dirs) -> dict[str, tuple[str, ...]]:
    """Study name -> the claims its sweep.json says the study is meant to decide, from the
    manifests of the folders holding `run_dirs` (runs outside a sweep contribute nothing)."""
    from sgdwalk.store import read_manifest

    out: dict[str, tuple[str, ...]] = {}
    for folder in sorted({Path(d).parent for d in run_dirs}):
        manifest = read_manifest(folder) or {}
        study, claims = manifest.get("study"), manifest.get("claims")
        if isinstance(study, str) and isinstance(claims, list):
            out[study] = tuple(dict.fromkeys([*out.get(study, ()), *map(str, claims)]))
    return out


def _load_sweep(path: Path) -> pd.DataFrame | None:
    try:
        from sgdwalk.studies.tables import load_sweep
    except ImportError:  # without the studies package, read the runs directly
        return None
    return load_sweep(path)


def _read(dirs: list[Path]) -> pd.DataFrame:
    from sgdwalk.store import RunStore, read_runs

    steps = read_runs(dirs)
    extra = {}
    for d in dirs:
        with RunStore.open(d) as run:
            meta = run.meta()
        extra[str(d)] = {k: meta.get(k) for k in ("steps_per_epoch", "study", "variant")}
    for key in ("steps_per_epoch", "study", "variant"):
        if key not in steps.columns:
            steps[key] = steps["run_dir"].map(lambda d, k=key: extra[d][k])
    return steps


def prepare(steps: pd.DataFrame) -> pd.DataFrame:
    """A copy of `steps` with the run columns analysis relies on: step (int), run_id,
    status, steps_per_epoch (from meta, else inferred from the `epoch` rows), epochs_done."""
    steps = steps.copy()
    if "run_id" not in steps.columns:
        steps["run_id"] = "run"
    steps["run_id"] = steps["run_id"].astype(str)
    steps["step"] = steps["step"].astype("int64")
    if "status" not in steps.columns:
        steps["status"] = "unknown"
    steps["status"] = steps["status"].fillna("unknown")
    if "run_dir" not in steps.columns:
        steps["run_dir"] = ""
    spe = steps["steps_per_epoch"] if "steps_per_epoch" in steps.columns else None
    inferred = {}
    for run_id, rows in steps.groupby("run_id", sort=False):
        known = pd.to_numeric(rows["steps_per_epoch"], errors="coerce").dropna() \
            if spe is not None else pd.Series(dtype=float)
        inferred[run_id] = float(known.iloc[0]) if len(known) else _infer_spe(rows)
    steps["steps_per_epoch"] = steps["run_id"].map(inferred).astype(float)
    steps["epochs_done"] = (steps["step"] + 1) / steps["steps_per_epoch"]
    return steps.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)


def _infer_spe(rows: pd.DataFrame) -> float:
    if "epoch" in rows.columns:
        ends = rows[(rows["step"] >= 0) & (rows["epoch"] > 0)]
        if len(ends):
            return float(np.median((ends["step"] + 1) / ends["epoch"]))
    return float("nan")


def config_columns(frame: pd.DataFrame) -> list[str]:
    """Config columns are dotted ("optim.lr"); metric names never contain a dot."""
    return [c for c in frame.columns if "." in c]


def runs_table(steps: pd.DataFrame) -> pd.DataFrame:
    """One row per run (index run_id): run_dir, status, diverged, failed, algorithm, lr, batch_size,
    seed, steps_per_epoch, last_step, the config columns, `condition` (an integer shared
    by seeds: runs whose configs differ only in train.seed and NOT_CONDITION keys) and
    `label` (e.g. "sgd lr=0.1 B=32")."""
    cfg = config_columns(steps)
    first = steps.groupby("run_id", sort=True).first()
    runs = pd.DataFrame(index=first.index)
    runs["run_dir"] = first["run_dir"]
    runs["status"] = first["status"]
    last = steps.groupby("run_id")["step"].max()
    runs["last_step"] = last
    div = (steps.groupby("run_id")["diverged"].max() == 1) if "diverged" in steps.columns \
        else pd.Series(False, index=runs.index)
    runs["diverged"] = (runs["status"] == "diverged") | div.reindex(runs.index, fill_value=False)
    runs["failed"] = runs["status"] == "failed"  # the sweep recorded that the run raised
    runs["algorithm"] = first[ALGORITHM] if ALGORITHM in first.columns else "sgd"
    runs["algorithm"] = runs["algorithm"].fillna("sgd")
    runs["lr"] = first[LR].astype(float) if LR in first.columns else np.nan
    runs["batch_size"] = first[BATCH].astype(float) if BATCH in first.columns else np.nan
    runs["seed"] = first[SEED] if SEED in first.columns else np.nan
    runs["steps_per_epoch"] = first["steps_per_epoch"]
    for key in ("study", "variant"):
        runs[key] = first[key] if key in first.columns else None
    for c in cfg:
        runs[c] = first[c]
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
    parts = [str(alg), f"lr={row['lr']:g}"]
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
