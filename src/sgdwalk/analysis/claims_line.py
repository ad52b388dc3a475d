"""Claims decided on the line curves of single runs: C1, C2, C10 and C12 (GD).

Each works on one run or pools the steps of every eligible run of a sweep (bootstrap over
steps within runs and over seeds within conditions).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from sgdwalk.analysis.bootstrap import IDENTITY, pooled_median
from sgdwalk.analysis.engine import ClaimSpec, Inputs, PartSpec, Statistic
from sgdwalk.analysis.floors import censored, floor_positions, uncorrected_eps_note
from sgdwalk.analysis.frames import Tables, has_data, pick_line_source, series
from sgdwalk.analysis.scope import parameter_count, seeds_by_condition, steps_used
from sgdwalk.analysis.shares import count_blocks, shares

MIN_GROUP = 10  # line curves per analysed epoch (sparser epochs are merged)
SHARE = 0.5  # C1, C2: "most steps"
COS_SIGMAS = 3.0  # C2: a bounce's cosine lies beyond the 3-sigma band of random directions
CROSSING_MAX = 0.1  # C10: "rarely"

LINE_NEEDS = ("line_*_{cols} from the line probe (walk.line; walk.preset=line or higher; "
              "e.g. `sgdwalk sweep trajectory`)")


def run_flags(t: Tables, runs, columns, flag,
              where=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """run -> (0/1 flags, 1-based epochs) over the steps where all columns are finite (and
    `where`, a boolean Series over t.steps, holds)."""
    out = {}
    for r in runs.index:
        rows = series(t.steps, r, *columns)
        if where is not None:
            rows = rows[where[rows.index].to_numpy(dtype=bool)]
        if len(rows):
            spe = runs.loc[r, "steps_per_epoch"]
            spe = spe if np.isfinite(spe) and spe > 0 else 1
            out[r] = (np.asarray(flag(rows), dtype=float),
                      rows["step"].to_numpy() // int(spe) + 1)
    return out


def epoch_groups(epochs: np.ndarray, min_n: int) -> np.ndarray:
    """Group labels for measurements by (1-based) epoch: consecutive epochs are merged until
    a group holds >= min_n measurements; a short remainder joins the group before it.
    The label is the group's first epoch. epochs must be sorted."""
    uniq, counts = np.unique(epochs, return_counts=True)
    group_of, start, acc, closed = {}, None, 0, []
    for e, c in zip(uniq, counts):
        if start is None:
            start = e
        acc += c
        group_of[e] = start
        if acc >= min_n:
            closed.append(start)
            start, acc = None, 0
    if start is not None and closed:  # a short remainder joins the previous group
        for e in uniq:
            if group_of[e] == start:
                group_of[e] = closed[-1]
    return np.array([group_of[e] for e in epochs], dtype=np.int64)


# ---------------------------------------------------------------- C1: interior convex floors


@dataclass
class EpochCells:
    """Per run, the flags of each analysed epoch (label: its first epoch) as count blocks."""

    cells: dict  # run -> {label: Blocks}
    labels: list[int]  # the labels holding >= MIN_GROUP measurements over all runs
    conds: dict  # condition -> run ids


def epoch_shares(data: EpochCells, draw) -> dict[int, float]:
    """Per analysed epoch, the share of flagged steps pooled over the (drawn) seeds of each
    condition, the steps of each run and epoch resampled in blocks."""
    tot, cnt = defaultdict(float), defaultdict(float)
    for rs in data.conds.values():
        for r in draw.seeds(rs):
            for lab, f in data.cells[r].items():
                (ones, cells), _ = draw.total(f)
                tot[lab] += ones
                cnt[lab] += cells
    return {lab: tot[lab] / cnt[lab] for lab in data.labels}


def median_window_share(data: EpochCells, draw) -> dict[str, float]:
    """median over analysed windows (epochs) E of share_E (epoch_shares): "for most of
    training" as a share of the analysed training (rule 3), not its worst window."""
    s = epoch_shares(data, draw)
    return {"median_window_share": float(np.median(list(s.values()))) if s else np.nan}


def interior_convex(t: Tables, runs) -> Inputs | str:
    """C1's inputs: per run and analysed epoch, steps flagged interior = 1 and convex = 1."""
    src = pick_line_source(t.steps, ("interior", "convex"), list(runs.index))
    if src is None:
        return LINE_NEEDS.format(cols="interior and line_*_convex")
    cols = (f"line_{src}_interior", f"line_{src}_convex")
    flags = run_flags(t, runs, cols, lambda rows: (rows[cols[0]] == 1) & (rows[cols[1]] == 1))
    cells = {}
    for r, (f, epochs) in flags.items():
        groups = epoch_groups(epochs, MIN_GROUP)
        cells[r] = {int(lab): count_blocks(f[groups == lab]) for lab in np.unique(groups)}
    n_of = defaultdict(int)
    for groups in cells.values():
        for lab, f in groups.items():
            n_of[lab] += f.n
    labels = sorted(lab for lab, n in n_of.items() if n >= MIN_GROUP)
    data = EpochCells(cells, labels, seeds_by_condition(runs.loc[list(cells)]))
    by_epoch = {str(k): v for k, v in epoch_shares(data, IDENTITY).items()}
    return Inputs(data, list(cells), steps_used(t, list(cells), *cols),
                  {"median_window_share": sum(n_of.values())},
                  {"src": src, "windows": len(labels)},
                  {"line_source": src, "share_by_epoch": by_epoch},
                  notes=uncorrected_eps_note(t, list(cells)))


INTERIOR_CONVEX = Statistic(interior_convex, median_window_share, (PartSpec(
    "median_window_share", "median over {windows} analysed windows of the share of steps "
    "with an interior convex floor (line_{src})", SHARE, "above", MIN_GROUP),))

C1 = ClaimSpec(
    "C1", "For most of training the loss on the line theta_t -> theta_t+1 is roughly convex "
    "with its minimum strictly inside (0, 1)",
    "share of steps with an interior, convex minimum > 0.5 over the analysed training "
    "(median over analysed windows)",
    (INTERIOR_CONVEX,), studies=("trajectory",))


# ---------------------------------------------------------------- C2: height and bouncing


@dataclass
class Bounces:
    """C2's data: the share flags of each part, and per run its cosines in units of the
    spread of two independent random directions, cos x sqrt(P)."""

    flags: dict  # part name -> (run -> Blocks, condition -> runs)
    z: dict  # run -> cos x sqrt(P) at its steps, in step order
    z_conds: dict  # condition -> its runs with a parameter count


def bounce_stats(data: Bounces, draw) -> dict[str, float]:
    """The shares of the flagged steps and the median of cos x sqrt(P), pooled."""
    out = shares(data.flags, draw)
    if data.z:
        out["median_cosine_z"] = pooled_median(data.z, data.z_conds, draw)
    return out


def cosines_in_sigmas(t: Tables, run_ids, cos: str) -> tuple[dict, dict]:
    """(run -> cos x sqrt(P) at its steps, run -> P) for the runs whose parameter count P
    is known: two independent random directions in R^P have cos ~ N(0, 1/P) (rule 4)."""
    params = {r: p for r in run_ids if (p := parameter_count(t, r))}
    return ({r: series(t.steps, r, cos)[cos].to_numpy(float) * np.sqrt(p)
             for r, p in params.items()}, params)


def height_cosine(t: Tables, runs) -> Inputs | str:
    """C2's inputs: per run, among the steps whose floor lies inside the step (0 < a* <= 1,
    measured), those with height > eps; the steps with a negative cosine; and the
    cosines in units of 1/sqrt(P), P the run's parameter count (meta.json)."""
    ids = list(runs.index)
    src = pick_line_source(t.steps, ("height", "eps", "floor_a"), ids)
    cos = next((c for c in ("cos_update", "cos_grad") if has_data(t.steps, c, ids)), None)
    if src is None or cos is None:
        need = []
        if src is None:
            need.append(LINE_NEEDS.format(cols="height, line_*_floor_a and line_*_eps"))
        if cos is None:
            need.append("cos_update from the trajectory probe (walk.trajectory; preset cheap)")
        return "; ".join(need)
    h, e, fa = (f"line_{src}_{k}" for k in ("height", "eps", "floor_a"))
    # a height counts over a floor the step reached (rule 2), measured (rule 6)
    inside = (t.steps[fa] > 0) & (t.steps[fa] <= 1) & (censored(t, src) != 1)
    high = run_flags(t, runs, (h, e, fa), lambda rows: rows[h] > rows[e], inside)
    lines = run_flags(t, runs, (h, e, fa), lambda rows: rows[h] > rows[e])
    neg = run_flags(t, runs, (cos,), lambda rows: rows[cos] < 0)
    used = sorted(set(lines) & set(neg))
    high = {r: high.get(r, (np.zeros(0), np.zeros(0, int))) for r in used}
    conds = seeds_by_condition(runs.loc[used])
    flags = {name: ({r: count_blocks(f[r][0]) for r in used}, conds) for name, f in
             (("share_height_above_noise", high), ("share_negative_cosine", neg))}
    n = {name: sum(len(f[r][0]) for r in used) for name, f in
         (("share_height_above_noise", high), ("share_negative_cosine", neg))}
    z, params = cosines_in_sigmas(t, used, cos)
    n["median_cosine_z"] = sum(len(v) for v in z.values())
    data = Bounces(flags, z, seeds_by_condition(runs.loc[list(z)]))
    details = {"line_source": src, "cosine": cos,
               "floor_position": floor_positions(t, used, src), "parameters": params,
               "median_cosine": pooled_median({r: v / np.sqrt(params[r]) for r, v in z.items()},
                                              data.z_conds)}
    missing = [r for r in used if r not in params]
    return Inputs(data, used, steps_used(t, used, h, e), n,
                  {"height": h, "eps": e, "cos": cos, "c": f"{COS_SIGMAS:g}"}, details,
                  needs=(f"the parameter count P of runs {', '.join(missing)} (meta.json "
                         "`parameters`, recorded by the trainer)") if missing else "",
                  notes=uncorrected_eps_note(t, used))


HEIGHT_COSINE = Statistic(height_cosine, bounce_stats, (
    PartSpec("share_height_above_noise", "share of steps with height > eps ({height} > "
             "{eps}) among those whose floor lies inside the step (0 < a* <= 1, measured)",
             SHARE, "above", MIN_GROUP),
    PartSpec("share_negative_cosine", "share of steps with {cos} < 0", SHARE, "above",
             MIN_GROUP),
    PartSpec("median_cosine_z", "median of {cos} x sqrt(P), P parameters (two independent "
             "directions: N(0, 1)); below -{c}: beyond the {c}-sigma band", -COS_SIGMAS,
             "below", MIN_GROUP)))

C2 = ClaimSpec(
    "C2", "SGD moves at a height above the valley floor, bouncing between its walls",
    "height > noise for most steps; cosine of consecutive updates mostly < 0",
    (HEIGHT_COSINE,), studies=("trajectory",))


# ---------------------------------------------------------------- C10: rare crossings


def crossings(t: Tables, runs) -> Inputs | str:
    """C10's inputs: per run, steps whose line crosses a barrier (line_S_crossing = 1)."""
    src = pick_line_source(t.steps, ("crossing",), list(runs.index))
    if src is None:
        return LINE_NEEDS.format(cols="crossing")
    col = f"line_{src}_crossing"
    flags = run_flags(t, runs, (col,), lambda rows: rows[col] == 1)
    conds = seeds_by_condition(runs.loc[list(flags)])
    data = {"share_crossing": ({r: count_blocks(f) for r, (f, _) in flags.items()}, conds)}
    return Inputs(data, list(flags), steps_used(t, list(flags), col),
                  {"share_crossing": sum(len(f) for f, _ in flags.values())}, {"col": col},
                  {"line_source": src}, notes=uncorrected_eps_note(t, list(flags)))


C10 = ClaimSpec(
    "C10", "SGD rarely crosses a barrier between consecutive iterates",
    "share of steps whose line has an interior maximum above both ends beyond the noise is "
    "small",
    (Statistic(crossings, shares, (PartSpec(
        "share_crossing", "share of steps whose line crosses a barrier above both ends "
        "beyond eps ({col} == 1)", CROSSING_MAX, "below", MIN_GROUP),)),),
    studies=("trajectory", "barriers"))


# ---------------------------------------------------------------- C12: C1 and C2 on GD

C12 = ClaimSpec(
    "C12", "Full-batch GD also oscillates across a valley", "the C1 and C2 tests on GD runs",
    (INTERIOR_CONVEX, HEIGHT_COSINE), studies=("trajectory",), algorithms=("gd",),
    needs_runs="a full-batch GD run (optim.algorithm=gd) with the line probe "
    "(walk.preset=line or higher)", needs_suffix=" on a GD run (optim.algorithm=gd)")
