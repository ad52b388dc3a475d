"""Families of conditions along lr and batch size, and trends across them.

A *family* is a set of conditions whose configs differ only in the swept key(s)
(tables.family_key); comparisons never cross families. Trends are Kendall-style pair
concordances: over every pair of conditions of a family with different x, the mean of
sign(dx) * sign(dy), in [-1, 1]; a condition's value is the mean over its seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sgdwalk.analysis.bootstrap import pair_signs
from sgdwalk.analysis.floors import measured_per_run
from sgdwalk.analysis.frames import (
    Tables,
    at_epoch_ends,
    epochs_completed,
    family_key,
    series,
    value_at,
)

N_ITER_CHECKPOINTS = 20  # matched iterations: evenly spaced common steps


@dataclass
class Family:
    """Conditions differing only in the swept key: x per condition, runs per condition."""

    conds: list[int]
    x: dict[int, float]
    runs: dict[int, list[str]]
    epochs: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # common epochs
    iters: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # common steps


def families(runs, vary: tuple[str, ...], x: str) -> list[Family]:
    """Families with >= 2 distinct values of runs[x] among their conditions."""
    out = []
    if not len(runs):
        return out
    for _, rs in runs.groupby(family_key(runs, vary), sort=True):
        by_cond = rs.groupby("condition", sort=True)
        xs = by_cond[x].first().to_dict()
        if len(set(xs.values())) >= 2:
            out.append(Family(sorted(xs), xs, {c: list(g.index) for c, g in by_cond}))
    return out


def family_runs(fams: list[Family]) -> list[str]:
    """Every run of the families, family by family, condition by condition."""
    return [r for f in fams for c in f.conds for r in f.runs[c]]


def n_pairs(fams: list[Family]) -> int:
    """Pairs of conditions compared within the families."""
    return sum(len(f.conds) * (len(f.conds) - 1) // 2 for f in fams)


def per_run(t: Tables, runs, column: str) -> dict[str, np.ndarray]:
    """run -> the finite values of `column` at steps >= 0, in step order; a floor or height
    of the line probe only where its floor was measured, not censored (floors.measured)."""
    if column not in t.steps.columns:
        return {}
    return measured_per_run(t, list(runs.index), column)


def with_data(fams: list[Family], have) -> list[Family]:
    """Families restricted to runs in `have`, keeping those still holding >= 2 x values."""
    out = []
    for f in fams:
        runs = {c: [r for r in rs if r in have] for c, rs in f.runs.items()}
        conds = [c for c in f.conds if runs[c]]
        if len({f.x[c] for c in conds}) >= 2:
            out.append(Family(conds, {c: f.x[c] for c in conds}, {c: runs[c] for c in conds}))
    return out


def median_values(fam: Family, values: dict, draw) -> np.ndarray:
    """Per condition: mean over (drawn) seeds of the median of (drawn) steps."""
    out = []
    for c in fam.conds:
        meds = []
        for r in draw.seeds(fam.runs[c]):
            v = values[r]
            meds.append(np.median(v[draw.steps(len(v))]))
        out.append(np.mean(meds))
    return np.asarray(out)


def median_trend(fams: list[Family], values: dict, draw, sign: float = 1.0) -> float:
    """Pair concordance of x with each condition's median value (sign=-1: of -x)."""
    tot = cnt = 0.0
    for f in fams:
        s = pair_signs([sign * f.x[c] for c in f.conds], median_values(f, values, draw))
        s = s[np.isfinite(s)]
        tot, cnt = tot + s.sum(), cnt + s.size
    return tot / cnt if cnt else np.nan


def matched(t: Tables, fams: list[Family], column: str) -> list[Family]:
    """Attach each family's common epochs (1..E, every run completed them) and common
    iteration checkpoints (N_ITER_CHECKPOINTS steps evenly spaced in [0, T], every run
    reached T); families without a common epoch are dropped."""
    out = []
    for f in fams:
        rs = [r for c in f.conds for r in f.runs[c]]
        e = min(epochs_completed(t.steps, r, column) for r in rs)
        last = min(int(series(t.steps, r, column)["step"].max()) for r in rs)
        if e < 1:
            continue
        f.epochs = np.arange(1, e + 1)
        f.iters = np.unique(np.round(np.linspace(0, last, N_ITER_CHECKPOINTS)).astype(int))
        out.append(f)
    return out


def checkpoint_values(t: Tables, fams: list[Family], column: str) -> dict:
    """(run, "epochs" | "iters") -> values of `column` at the family's checkpoints."""
    out = {}
    for f in fams:
        for c in f.conds:
            for r in f.runs[c]:
                out[r, "epochs"] = at_epoch_ends(t.steps, r, column, f.epochs)
                out[r, "iters"] = value_at(t.steps, r, column, f.iters)
    return out


def checkpoint_trend(fams: list[Family], vals: dict, kind: str, draw, sign: float) -> float:
    """Pair concordance of sign * x with the value at matched checkpoints ("epochs" or
    "iters"), pooled over the (drawn) checkpoints of every family."""
    tot = cnt = 0.0
    for f in fams:
        points = f.epochs if kind == "epochs" else f.iters
        idx = draw.steps(len(points))
        v = np.stack([np.mean([vals[r, kind] for r in draw.seeds(f.runs[c])], axis=0)
                      for c in f.conds])
        s = pair_signs([sign * f.x[c] for c in f.conds], v[:, idx])
        s = s[np.isfinite(s)]
        tot, cnt = tot + s.sum(), cnt + s.size
    return tot / cnt if cnt else np.nan


def family_details(fams: list[Family], runs) -> list[dict]:
    """Per family, for a claim's details: its conditions, runs and matched checkpoints."""
    return [{"conditions": [runs.loc[f.runs[c][0], "label"] for c in f.conds],
             "runs": [r for c in f.conds for r in f.runs[c]],
             "matched_epochs": [int(e) for e in f.epochs[[0, -1]]] if len(f.epochs) else [],
             "matched_steps": [int(s) for s in f.iters[[0, -1]]] if len(f.iters) else []}
            for f in fams]
