"""The river-valley claims RV1, RV2, RV3 (Wen et al. 2024, on warmup-stable-decay runs).

Every step's economy model of the batch line (walk.economy) splits the step's loss into a
floor and a height: econ_floor_loss + econ_height = f_t(0), the loss measured at the step
(exactly, per step). The phases of a run come from its stored lr (the lr applied at each
step): the *stable phase* is the steps at the run's peak lr, from the end of the warmup on;
the *decay* is every step after the last one at the peak. A floor at an end of the economy
bracket (walk.line_min / walk.line_max) is a bound, not a measurement, and its step is left
out (rule 6), so every mean below is over steps with measured floors.

RV1  stable phase (constant and wsd runs): the height stays high (median in the second
     half of the stable phase / median in the first half, mean over runs, above STAYS) and
     grows with the peak lr (pair concordance of lr with the median stable-phase height
     of each condition, in families differing only in lr, above 0).
RV2  decay (wsd runs): windows S = the last WINDOW of the run's steps before the decay and
     E = the last WINDOW of the run. The height falls ((h_S - h_E) / h_S, mean over runs,
     above FALL) and the drop in loss is mostly the fall in height (sum over runs of
     h_S - h_E over the sum of L_S - L_E, above SHARE), with L = F + h the window means.
RV3  stable phase (constant and wsd runs): the floor loss keeps improving: mean floor loss
     of the third quarter of the stable phase minus that of the fourth, mean over runs,
     above 0.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sgdwalk.analysis.engine import ClaimSpec, Inputs, PartSpec, Statistic
from sgdwalk.analysis.families import (
    families,
    family_details,
    family_runs,
    median_trend,
    n_pairs,
    with_data,
)
from sgdwalk.analysis.floors import GRID_ENDS
from sgdwalk.analysis.frames import LR, Tables, series
from sgdwalk.analysis.scope import seeds_by_condition

WINDOW = 0.1  # RV2: each window is this fraction of the run's steps
STAYS = 0.5  # RV1: the stable phase's late height keeps more than half its early height
FALL = 0.5  # RV2: the decay removes more than half the height
SHARE = 0.5  # RV2: "mostly": more than half the drop in loss is the fall in height
MIN_STEPS = 10  # measured steps a run needs in each half, quarter or window it is read in
SCHEDULE = "optim.schedule"
STUDY = ("river-valley",)
ECON = ("econ_floor_loss", "econ_height")
PEAK_RTOL = 1e-6  # an lr within this relative distance of the peak is at the peak


def schedule_of(runs: pd.DataFrame, run_id: str) -> str:
    """The run's optim.schedule (runs recorded before schedules existed: constant)."""
    if SCHEDULE not in runs.columns or not isinstance(runs.loc[run_id, SCHEDULE], str):
        return "constant"
    return runs.loc[run_id, SCHEDULE]


def phases(t: Tables, run_id: str) -> dict | None:
    """{"stable": (first, last) steps at the peak lr, "end": the run's last step + 1} from the
    stored lr; None without an lr column."""
    rows = series(t.steps, run_id, "lr")
    if not len(rows):
        return None
    s, lr = rows["step"].to_numpy(), rows["lr"].to_numpy(dtype=float)
    at_peak = np.flatnonzero(lr >= lr.max() * (1 - PEAK_RTOL))
    return {"stable": (int(s[at_peak[0]]), int(s[at_peak[-1]])), "end": int(s.max()) + 1}


def measured_econ(t: Tables, run_id: str) -> pd.DataFrame:
    """The run's steps (step, econ_floor_loss, econ_height) whose economy floor lies inside
    the bracket (walk.line_min, walk.line_max), times the step's econ_reach where stored
    (walk.economy_reach = "peak"): a floor at an end is a bound (rule 6)."""
    rows = series(t.steps, run_id, *ECON, "econ_floor_a")
    first = t.steps.loc[t.steps["run_id"] == run_id].iloc[0]
    lo, hi = (float(first[k]) if k in first.index and np.isfinite(first[k]) else d
              for k, d in GRID_ENDS)
    reach = (t.steps.loc[rows.index, "econ_reach"].to_numpy(dtype=float)
             if "econ_reach" in t.steps.columns else np.ones(len(rows)))
    reach = np.where(np.isnan(reach), 1.0, reach)  # a run measured with "step"
    lo, hi = lo * reach, hi * reach
    tol = 1e-9 * (hi - lo)
    a = rows["econ_floor_a"].to_numpy(dtype=float)
    return rows[(a > lo + tol) & (a < hi - tol)][["step", *ECON]]


def _between(rows: pd.DataFrame, first: int, stop: int) -> pd.DataFrame:
    return rows[(rows["step"] >= first) & (rows["step"] < stop)]


def _steps_read(parts: dict) -> dict:
    """run id -> {"first", "last", "n"} of the measured steps read (parts: run -> frames)."""
    out = {}
    for r, frames in parts.items():
        s = np.concatenate([f["step"].to_numpy() for f in frames])
        out[r] = {"first": int(s.min()), "last": int(s.max()), "n": int(len(s))}
    return out


def _of_schedules(runs: pd.DataFrame, names: tuple[str, ...]) -> pd.DataFrame:
    return runs[[schedule_of(runs, r) in names for r in runs.index]]


def _missing_runs(names: tuple[str, ...]) -> str:
    return (f"econ_height, econ_floor_loss (walk.economy) and lr on {' or '.join(names)} "
            f"runs (optim.schedule) with >= {MIN_STEPS} measured floors in each part of the "
            "run the claim reads (`sgdwalk sweep river-valley`)")


def _mean_over_runs(per_run: dict, conds: dict, draw, value) -> float:
    """Mean of value(run data, draw) over runs, seeds drawn within each condition."""
    vals = [value(per_run[r], draw) for rs in conds.values() for r in draw.seeds(rs)]
    vals = [v for v in vals if math.isfinite(v)]
    return float(np.mean(vals)) if vals else math.nan


def _drawn(values: np.ndarray, draw) -> np.ndarray:
    return values[draw.steps(len(values))]


def _conds(runs: pd.DataFrame, used: list[str]) -> dict:
    return seeds_by_condition(runs.loc[used])


# ---------------------------------------------------------------- RV1: stable-phase height


def stable_heights(t: Tables, runs) -> Inputs | str:
    """RV1's inputs: per run the measured heights of the stable phase, split in halves."""
    names = ("constant", "wsd")
    halves, heights, read = {}, {}, {}
    for r in _of_schedules(runs, names).index:
        ph = phases(t, r)
        if ph is None:
            continue
        first, last = ph["stable"]
        mid = (first + last + 1) // 2
        rows = measured_econ(t, r)
        a, b = _between(rows, first, mid), _between(rows, mid, last + 1)
        if len(a) >= MIN_STEPS and len(b) >= MIN_STEPS:
            halves[r] = (a["econ_height"].to_numpy(), b["econ_height"].to_numpy())
            read[r] = (a, b)
            heights[r] = np.concatenate(halves[r])
    if not halves:
        return _missing_runs(names)
    used = list(halves)
    fams = with_data(families(runs.loc[used], (LR,), "lr"), heights)
    n = {"stays_high": len(used), "trend_height_lr": n_pairs(fams)}
    details = {"stable_steps": {r: list(phases(t, r)["stable"]) for r in used},
               "median_height": {runs.loc[r, "label"]: float(np.median(heights[r]))
                                 for r in used},
               "half_medians": {runs.loc[r, "label"]: [float(np.median(h)) for h in halves[r]]
                                for r in used},
               "families": family_details(fams, runs)}
    needs = "" if fams else ("stable-phase heights of runs differing only in optim.lr, >= 2 "
                             "peak lrs (`sgdwalk sweep river-valley`)")
    runs_used = family_runs(fams) + [r for r in used if r not in family_runs(fams)]
    return Inputs((halves, heights, fams, _conds(runs, used)), runs_used,
                  _steps_read(read), n, needs=needs, details=details)


def stable_height_stats(data, draw) -> dict[str, float]:
    halves, heights, fams, conds = data

    def ratio(h, d):
        early, late = (np.median(_drawn(x, d)) for x in h)
        return late / early if early > 0 else math.nan

    out = {"stays_high": _mean_over_runs(halves, conds, draw, ratio)}
    if fams:
        out["trend_height_lr"] = median_trend(fams, heights, draw)
    return out


RV1 = ClaimSpec(
    "RV1", "During the stable phase the height above the floor stays high and grows with "
    "the peak lr",
    "economy height at the peak lr (measured floors): median of the stable phase's second "
    "half over its first half, and concordance of peak lr with the median height",
    (Statistic(stable_heights, stable_height_stats, (
        PartSpec("stays_high", "median econ_height, second half of the stable phase over "
                 "the first (mean over runs)", STAYS),
        PartSpec("trend_height_lr", "pair concordance of the peak lr with the median "
                 "stable-phase econ_height (Kendall tau)", 0.0))),),
    studies=STUDY)


# ---------------------------------------------------------------- RV2: the decay


def decay_windows(t: Tables, runs) -> Inputs | str:
    """RV2's inputs: per wsd run the measured (floor, height) of the window before the decay
    and of the run's last window."""
    names = ("wsd",)
    windows, details, read = {}, {}, {}
    for r in _of_schedules(runs, names).index:
        ph = phases(t, r)
        if ph is None or ph["stable"][1] + 1 >= ph["end"]:
            continue  # no decay
        w = max(1, round(WINDOW * ph["end"]))
        start = ph["stable"][1] + 1
        rows = measured_econ(t, r)
        s, e = _between(rows, start - w, start), _between(rows, ph["end"] - w, ph["end"])
        if len(s) >= MIN_STEPS and len(e) >= MIN_STEPS:
            windows[r] = tuple(x[list(ECON)].to_numpy() for x in (s, e))
            read[r] = (s, e)
            (fs, hs), (fe, he) = (x.mean(axis=0) for x in windows[r])
            details[runs.loc[r, "label"]] = {
                "before_decay": [start - w, start], "end": [ph["end"] - w, ph["end"]],
                "floor": [float(fs), float(fe)], "height": [float(hs), float(he)],
                "loss": [float(fs + hs), float(fe + he)], "steps": [len(s), len(e)]}
    if not windows:
        return _missing_runs(names)
    used = list(windows)
    return Inputs((windows, _conds(runs, used)), used, _steps_read(read),
                  {"height_fall": len(used), "height_share": len(used)},
                  details={"windows": details})


def decay_stats(data, draw) -> dict[str, float]:
    windows, conds = data
    drops = []  # per drawn run: (fall in height, drop in loss, height before)
    for rs in conds.values():
        for r in draw.seeds(rs):
            (fs, hs), (fe, he) = (_drawn(x, draw).mean(axis=0) for x in windows[r])
            drops.append((hs - he, (fs + hs) - (fe + he), hs))
    falls = [dh / h for dh, _, h in drops if h > 0]
    fall = float(np.mean(falls)) if falls else math.nan
    dh, dl = sum(d[0] for d in drops), sum(d[1] for d in drops)
    return {"height_fall": fall, "height_share": dh / dl if dl > 0 else math.nan}


RV2 = ClaimSpec(
    "RV2", "During the decay the height falls, and the drop in loss is mostly the fall in "
    "height",
    "economy floor and height (measured floors), window before the decay vs the run's last "
    "window: relative fall of the height, and its share of the drop in loss = floor + height",
    (Statistic(decay_windows, decay_stats, (
        PartSpec("height_fall", "(h_S - h_E) / h_S of the mean econ_height, window before "
                 "the decay vs last window (mean over wsd runs)", FALL),
        PartSpec("height_share", "share of the drop in loss (floor + height) that is the "
                 "fall in height, summed over wsd runs", SHARE))),),
    studies=STUDY)


# ---------------------------------------------------------------- RV3: the floor improves


def stable_floors(t: Tables, runs) -> Inputs | str:
    """RV3's inputs: per run the measured floor losses of the stable phase's last two
    quarters."""
    names = ("constant", "wsd")
    quarters, details, read = {}, {}, {}
    for r in _of_schedules(runs, names).index:
        ph = phases(t, r)
        if ph is None:
            continue
        first, last = ph["stable"]
        cuts = [first + round(k * (last + 1 - first) / 4) for k in (2, 3, 4)]
        rows = measured_econ(t, r)
        q3, q4 = _between(rows, cuts[0], cuts[1]), _between(rows, cuts[1], cuts[2])
        if len(q3) >= MIN_STEPS and len(q4) >= MIN_STEPS:
            quarters[r] = (q3["econ_floor_loss"].to_numpy(), q4["econ_floor_loss"].to_numpy())
            read[r] = (q3, q4)
            details[runs.loc[r, "label"]] = {
                "quarters": [[cuts[0], cuts[1]], [cuts[1], cuts[2]]],
                "mean_floor": [float(q.mean()) for q in quarters[r]]}
    if not quarters:
        return _missing_runs(names)
    used = list(quarters)
    return Inputs((quarters, _conds(runs, used)), used, _steps_read(read),
                  {"floor_drop": len(used)}, details={"stable_quarters": details})


def floor_drop(data, draw) -> dict[str, float]:
    quarters, conds = data

    def drop(q, d):
        return float(_drawn(q[0], d).mean() - _drawn(q[1], d).mean())

    return {"floor_drop": _mean_over_runs(quarters, conds, draw, drop)}


RV3 = ClaimSpec(
    "RV3", "The floor loss keeps improving during the stable phase",
    "mean economy floor loss (measured floors) of the stable phase's third quarter minus "
    "its fourth, mean over runs",
    (Statistic(stable_floors, floor_drop, (
        PartSpec("floor_drop", "mean econ_floor_loss, third minus fourth quarter of the "
                 "stable phase (mean over runs)", 0.0),)),),
    studies=STUDY)
