"""What the line probe's floor and noise columns say beyond their values.

- Censored floors (docs/claims.md, rule 6): when the sampled curve's minimum is an end of
  the grid, a* and F are bounds and the heights lower bounds, not measurements. The line
  probe flags them (`line_S_censored`); for runs recorded before it, a floor exactly at
  `walk.line_min` or `walk.line_max` is censored. Statistics that need a measured floor
  (heights, floor rises, barriers between floor points) leave those steps out.
- Floor positions (rule 2): a height above the floor is counted over floors the step
  reached (0 < a* <= 1); beside it, the shares of steps that climbed (a* <= 0), reached
  or passed their floor, and stopped short of it (a* > 1).
- eps (rule 1): runs whose line probe recorded `line_population` have eps with the
  finite-population correction; older runs keep the old eps, and claims that compare
  with it say so in their notes.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from sgdwalk.analysis.frames import Tables, has_data

POPULATION = "line_population"  # header value of the line probe (step -1)
GRID_ENDS = ("walk.line_min", -0.25), ("walk.line_max", 1.25)  # config key, its default
# columns that describe the floor, bounds rather than values where it is censored
FLOOR_COLUMN = re.compile(r"line_(\w+?)_(floor_a|floor_loss|height|height_end|rel_height)")


def censored(t: Tables, src: str) -> pd.Series:
    """Per row of t.steps: 1.0 where the floor of line_{src} was censored, 0.0 where it was
    measured, NaN where unknown (no floor, or neither the flag nor floor_a recorded)."""
    steps = t.steps
    flag = f"line_{src}_censored"
    out = (steps[flag].astype(float) if flag in steps.columns
           else pd.Series(np.nan, index=steps.index))
    floor_a = f"line_{src}_floor_a"
    if floor_a in steps.columns and out.isna().any():  # runs recorded before the flag
        a = steps[floor_a].to_numpy(dtype=float)
        lo, hi = (steps[k].to_numpy(dtype=float) if k in steps.columns
                  else np.full(len(steps), d) for k, d in GRID_ENDS)
        tol = 1e-9 * (hi - lo)
        edge = np.where(np.isfinite(a), ((a <= lo + tol) | (a >= hi - tol)) * 1.0, np.nan)
        out = out.where(out.notna(), edge)
    return out


def measured(t: Tables, column: str) -> pd.Series:
    """The column of t.steps with censored floors as NaN when it describes a line floor
    (line_S_floor_a, _floor_loss, _height, _height_end, _rel_height); else as it is."""
    m = FLOOR_COLUMN.fullmatch(column)
    values = t.steps[column].astype(float)
    return values.where(censored(t, m.group(1)) != 1) if m else values


def measured_per_run(t: Tables, run_ids, column: str) -> dict[str, np.ndarray]:
    """run -> the finite `measured` values of `column` at steps >= 0, in step order."""
    v = measured(t, column)
    ok = (t.steps["step"] >= 0) & np.isfinite(v)
    out = {}
    for r, values in v[ok].groupby(t.steps.loc[ok, "run_id"], sort=False):
        if r in set(run_ids) and len(values):
            out[r] = values.to_numpy(dtype=float)
    return {r: out[r] for r in run_ids if r in out}


def censored_change(t: Tables, src: str) -> pd.Series:
    """Per row of t.steps: True where the floor of this step or of the step before it (the
    same run's step - 1) was censored, so a change of the floor loss there is no
    measurement."""
    c, steps = censored(t, src), t.steps
    same_run = steps["run_id"].eq(steps["run_id"].shift(1)) & steps["step"].diff().eq(1)
    return c.eq(1) | (same_run & c.shift(1).eq(1))


def censored_at(t: Tables, run_id: str, src: str) -> dict[int, float]:
    """step -> 1.0 (censored) / 0.0 (measured) for one run's steps with a known floor."""
    c = censored(t, src)
    rows = (t.steps["run_id"] == run_id) & c.notna()
    return dict(zip(t.steps.loc[rows, "step"].astype(int), c[rows]))


def floor_positions(t: Tables, run_ids, src: str) -> dict:
    """Where the floors of line_{src} lie relative to the step, over the steps of `run_ids`
    with a floor (censored ones included: their side is certain): shares "uphill"
    (a* <= 0: the step climbed from its start), "overshoot" (0 < a* <= 1: the step reached
    or passed its floor; a* = 1 exactly, landing on it, has measure zero), "undershoot"
    (a* > 1: the floor lies beyond the step), and "steps", their number."""
    steps = t.steps
    rows = steps["run_id"].isin(list(run_ids)) & (steps["step"] >= 0)
    a = steps.loc[rows, f"line_{src}_floor_a"].to_numpy(dtype=float)
    a = a[np.isfinite(a)]
    if not len(a):
        return {"uphill": np.nan, "overshoot": np.nan, "undershoot": np.nan, "steps": 0}
    return {"uphill": float(np.mean(a <= 0)), "overshoot": float(np.mean((a > 0) & (a <= 1))),
            "undershoot": float(np.mean(a > 1)), "steps": int(len(a))}


def uncorrected_eps_note(t: Tables, run_ids) -> list[str]:
    """["eps without the finite-population correction in runs a, b (...)"] for the runs
    of `run_ids` that recorded no line_population; [] when every run did."""
    old = [r for r in run_ids if not has_data(t.steps, POPULATION, [r])]
    if not old:
        return []
    return [f"eps without the finite-population correction in runs {', '.join(old)} "
            "(recorded before line_population: a sample's eps even where the probe set "
            "is the whole training split)"]
