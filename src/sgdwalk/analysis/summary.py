"""Per-run summaries: one row per run of a run or sweep table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sgdwalk.analysis.claims_barrier import barrier_flags, barrier_ks
from sgdwalk.analysis.floors import censored, censored_change, floor_positions, measured
from sgdwalk.analysis.frames import (
    Tables,
    at_epoch_ends,
    epochs_completed,
    has_data,
    height_column,
    pick_line_source,
    series,
    value_at,
)
from sgdwalk.analysis.shares import flag_share

EVALS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


def summarize_runs(table) -> pd.DataFrame:
    """One row per run (index run_id) of a runs x steps table (or Tables). Columns:

    - run: study, variant, label, status, diverged (bool), diverged_step, algorithm, lr,
      batch_size, seed, steps (updates logged), epochs_done;
    - final_<split>_<loss|acc>: the last finite evaluation (for a diverged run, the last
      one before it diverged);
    - line_source (probe, batch or heldout), height_source (line_S_height, else
      econ_height), height_median (its median over the steps whose floor was measured, not
      censored) and height_median_e<E> per 1-based epoch E; censored_share (steps whose
      floor lies at the grid's edge);
    - dist_init_final, path_length_final; matched_epoch (the last epoch every non-diverged
      run completed) with dist_init_at_epoch, path_length_at_epoch; matched_step (the
      last step every non-diverged run reached) with dist_init_at_step,
      path_length_at_step;
    - sharp_lambda_max_final, sharp_lr_lambda_final, align_topk_median;
    - interior_convex_share, height_above_eps_share (over the measured floors inside the
      step, 0 < a* <= 1), uphill_share, overshoot_share, undershoot_share (a* <= 0,
      0 < a* <= 1, a* > 1),
      cos_update_neg_share, crossing_share; barrier_floor_share, barrier_iter_share (share
      of (t, k) whose barrier exceeds line_S_eps; floor segments between measured floors),
      floor_rise_share (share of steps with floor_change > eps, between measured floors).
    Values whose inputs are missing are NaN.
    """
    t = table if isinstance(table, Tables) else Tables.from_frames(table)
    steps, runs = t.steps, t.runs
    rows = []
    src = pick_line_source(steps, ("height",))
    hcol = height_column(steps)
    ok = [r for r in runs[~runs["diverged"]].index if has_data(steps, "dist_init", [r])]
    e_match = min((epochs_completed(steps, r, "dist_init") for r in ok), default=0)
    s_match = min((_last(steps, r, "dist_init") for r in ok), default=-1)
    for r, run in runs.iterrows():
        row = {"study": run["study"], "variant": run["variant"], "label": run["label"],
               "status": run["status"], "diverged": bool(run["diverged"]),
               "diverged_step": _diverged_step(steps, r), "algorithm": run["algorithm"],
               "lr": run["lr"], "batch_size": run["batch_size"], "seed": run["seed"],
               "steps": int(max(run["last_step"] + 1, 0)),
               "epochs_done": (run["last_step"] + 1) / run["steps_per_epoch"]}
        for name in EVALS:
            row[f"final_{name}"] = _last_value(steps, r, name)
        row["line_source"], row["height_source"] = src, hcol
        if hcol:
            row.update(_heights(t, r, hcol, run["steps_per_epoch"]))
        for name in ("dist_init", "path_length"):
            row[f"{name}_final"] = _last_value(steps, r, name)
            row[f"{name}_at_epoch"] = (at_epoch_ends(steps, r, name, [e_match])[0]
                                       if e_match >= 1 else np.nan)
            row[f"{name}_at_step"] = (value_at(steps, r, name, [s_match])[0]
                                      if s_match >= 0 else np.nan)
        row["matched_epoch"] = e_match if e_match >= 1 else np.nan
        row["matched_step"] = s_match if s_match >= 0 else np.nan
        row["sharp_lambda_max_final"] = _last_value(steps, r, "sharp_lambda_max")
        row["sharp_lr_lambda_final"] = _last_value(steps, r, "sharp_lr_lambda")
        row["align_topk_median"] = _median(steps, r, "align_topk")
        row.update(_shares(t, r, src))
        rows.append(row)
    return pd.DataFrame(rows, index=pd.Index(runs.index, name="run_id"))


def _last(steps, r, col) -> int:
    s = series(steps, r, col)["step"] if col in steps.columns else []
    return int(s.max()) if len(s) else -1


def _last_value(steps, r, col) -> float:
    if col not in steps.columns:
        return np.nan
    rows = steps.loc[(steps["run_id"] == r), ["step", col]]
    v = rows[col].to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    return float(v[-1]) if len(v) else np.nan


def _median(steps, r, col) -> float:
    if col not in steps.columns:
        return np.nan
    v = series(steps, r, col)[col]
    return float(v.median()) if len(v) else np.nan


def _diverged_step(steps, r) -> float:
    if "diverged" not in steps.columns:
        return np.nan
    rows = steps[(steps["run_id"] == r) & (steps["diverged"] == 1)]
    return float(rows["step"].min()) if len(rows) else np.nan


def _heights(t: Tables, r, col, spe) -> dict:
    """Median height over the run's measured floors (not censored), and per epoch."""
    h = measured(t, col)
    rows = (t.steps["run_id"] == r) & (t.steps["step"] >= 0) & np.isfinite(h)
    v, step = h[rows], t.steps.loc[rows, "step"]
    out = {"height_median": float(v.median()) if len(v) else np.nan}
    if len(v) and np.isfinite(spe) and spe > 0:
        for e, x in v.groupby(step // int(spe) + 1):
            out[f"height_median_e{int(e)}"] = float(x.median())
    return out


def _step_share(steps, r, cols, flag, where=None) -> float:
    """Share of the run's steps with `flag` among those where every column is measured
    (and `where`, a boolean Series over the steps, holds)."""
    if not all(c in steps.columns for c in cols):
        return np.nan
    rows = series(steps, r, *cols)
    if where is not None:
        rows = rows[where[rows.index].to_numpy(dtype=bool)]
    return flag_share(flag(rows).to_numpy(dtype=float))


def _shares(t: Tables, r, src) -> dict:
    out = _line_shares(t, r, src) if src else {}
    out["cos_update_neg_share"] = _step_share(t.steps, r, ("cos_update",),
                                              lambda d: d["cos_update"] < 0)
    return {**out, **_barrier_shares(t, r, src)}


def _line_shares(t: Tables, r, src) -> dict:
    """The run's shares of line-curve flags (the claims' rules: docs/claims.md)."""
    steps = t.steps
    i, c, h, e, fa, x = (f"line_{src}_{k}" for k in ("interior", "convex", "height", "eps",
                                                     "floor_a", "crossing"))
    cens = censored(t, src)
    out = {"interior_convex_share": _step_share(steps, r, (i, c),
                                                lambda d: (d[i] == 1) & (d[c] == 1))}
    if fa in steps.columns:  # heights over the floors the step reached, measured (C2)
        inside = (steps[fa] > 0) & (steps[fa] <= 1) & (cens != 1)
        out["height_above_eps_share"] = _step_share(steps, r, (h, e, fa),
                                                    lambda d: d[h] > d[e], inside)
        pos = floor_positions(t, [r], src)
        out.update({f"{k}_share": pos[k] for k in ("uphill", "overshoot", "undershoot")})
    else:
        out["height_above_eps_share"] = np.nan
    mine = cens[(steps["run_id"] == r) & (steps["step"] >= 0)].dropna()
    out["censored_share"] = flag_share(mine.to_numpy())
    out["crossing_share"] = _step_share(steps, r, (x,), lambda d: d[x] == 1)
    return out


def _barrier_shares(t: Tables, r, src) -> dict:
    """Shares of (t, k) cells with a barrier above eps on each path, and of floor rises."""
    steps, out = t.steps, {}
    eps = f"line_{src}_eps" if src and f"line_{src}_eps" in steps.columns else None
    for path in ("floor", "iter"):
        ks = barrier_ks(steps, path)
        out[f"barrier_{path}_share"] = flag_share(
            barrier_flags(t, r, (path,), ks, eps)[0]) if ks and eps else np.nan
    # floor rises as the barrier probe stored them (no recomputation from floor losses),
    # between measured floors only
    out["floor_rise_share"] = _step_share(steps, r, ("floor_change", eps),
                                          lambda d: d["floor_change"] > d[eps],
                                          ~censored_change(t, src)) if eps else np.nan
    return out
