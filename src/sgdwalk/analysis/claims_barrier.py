"""Claims on barriers: C6 (the valley floor has barriers) and C7 (SGD travels far
without being stopped by them).

A barrier at (t, k) counts when barrier_floor_k{k} (or barrier_iter_k{k}) at step t exceeds
the evaluation noise line_S_eps at step t, S being the first line source (the one the
barrier probe uses).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from sgdwalk.analysis.bootstrap import IDENTITY, Blocks, nanmean
from sgdwalk.analysis.engine import ClaimSpec, Inputs, PartSpec, Statistic
from sgdwalk.analysis.floors import censored_at, censored_change, uncorrected_eps_note
from sgdwalk.analysis.frames import (
    Tables,
    at_epoch_ends,
    epochs_completed,
    family_key,
    has_data,
    pick_line_source,
)
from sgdwalk.analysis.scope import seeds_by_condition, steps_used
from sgdwalk.analysis.shares import count_blocks, counts, pooled, shares

BARRIER_SHARE = 0.05  # C6, C7: "a non-trivial share" of (t, k) with a barrier
RISE_SHARE = 0.01  # C6: "non-monotone": share of steps whose floor loss rises beyond eps
MIN_CELLS = 10

BARRIER_NEEDS = ("barrier_floor_k* and line_*_eps from the barrier and line probes "
                 "(walk.barrier; walk.preset=full; e.g. `sgdwalk sweep barriers`)")


def barrier_ks(steps, path: str = "floor") -> list[int]:
    """The gaps k of the stored barrier_<path>_k{k} columns."""
    pat = re.compile(rf"barrier_{path}_k(\d+)")
    return sorted(int(m.group(1)) for c in steps.columns if (m := pat.fullmatch(c)))


def eps_source(t: Tables, run_ids) -> str | None:
    """The line source whose eps the barrier probe compares with: the run's first
    walk.line_sources entry when recorded and measured, else the first with data."""
    if "walk.line_sources" in t.runs.columns and len(run_ids):
        first = t.runs.loc[run_ids[0], "walk.line_sources"]
        if isinstance(first, (tuple, list)) and first and has_data(
                t.steps, f"line_{first[0]}_eps", run_ids):
            return str(first[0])
    return pick_line_source(t.steps, ("eps",), run_ids)


def barrier_flags(t: Tables, run_id: str, paths, ks: list[int], eps: str) -> list[np.ndarray]:
    """Per path ("floor", "iter"), a (steps, len(ks)) matrix: 1 where barrier_<path>_k{k} >
    eps at step t, 0 where not, NaN where either is missing or, on the floor path, where
    the floor of step t or t - k was censored (a bound is no floor point: rule 6). Rows are
    the run's steps (>= 0) with any barrier value, the same rows for every path. eps is
    line_S_eps, S the line source whose floors the barrier probe joined."""
    rows = t.steps[(t.steps["run_id"] == run_id) & (t.steps["step"] >= 0)]
    e = rows[eps].to_numpy(dtype=float)[:, None]
    step = rows["step"].to_numpy()
    cens = censored_at(t, run_id, eps.removeprefix("line_").removesuffix("_eps"))
    bound = np.stack([[cens.get(s) == 1 or cens.get(s - k) == 1 for k in ks] for s in step]) \
        if len(step) else np.zeros((0, len(ks)), bool)
    out = []
    for path in paths:
        b = rows[[f"barrier_{path}_k{k}" for k in ks]].to_numpy(dtype=float)
        ok = np.isfinite(b) & np.isfinite(e) & ~(bound if path == "floor" else False)
        out.append(np.where(ok, (b > e).astype(float), np.nan))
    keep = np.any([np.isfinite(m).any(axis=1) for m in out], axis=0)
    return [m[keep] for m in out]


def rise_flags(t: Tables, run_id: str, src: str) -> np.ndarray:
    """1 where the floor loss rose beyond eps from step t-1 to t (floor_change > eps_t),
    0 where not; floor_change is recomputed from line_S_floor_loss at consecutive steps
    when the barrier probe did not store it. Steps where the floor of t or t-1 was
    censored are left out: a change between bounds is no measured rise (rule 6)."""
    sel = (t.steps["run_id"] == run_id) & (t.steps["step"] >= 0)
    rows = t.steps[sel]
    eps = rows[f"line_{src}_eps"].to_numpy(dtype=float)
    consecutive = np.diff(rows["step"].to_numpy(), prepend=-10) == 1
    if "floor_change" in rows.columns and np.isfinite(rows["floor_change"].to_numpy(float)).any():
        change = rows["floor_change"].to_numpy(dtype=float)
    else:
        floor = rows[f"line_{src}_floor_loss"].to_numpy(dtype=float) \
            if f"line_{src}_floor_loss" in rows.columns else np.full(len(rows), np.nan)
        change = np.where(consecutive, floor - np.roll(floor, 1), np.nan)
    ok = np.isfinite(change) & np.isfinite(eps) & ~censored_change(t, src)[sel].to_numpy()
    return (change[ok] > eps[ok]).astype(float)


# ---------------------------------------------------------------- C6: the floor has barriers


def floor_barriers(t: Tables, runs) -> Inputs | str:
    """C6's inputs: per run, (t, k) cells with a floor barrier and steps with a floor rise."""
    ks = barrier_ks(t.steps)
    ids = [r for r in runs.index if any(has_data(t.steps, f"barrier_floor_k{k}", [r])
                                        for k in ks)]
    src = eps_source(t, ids) if ids else None
    if not ids or src is None:
        return BARRIER_NEEDS
    eps = f"line_{src}_eps"
    floor_m = {r: barrier_flags(t, r, ("floor",), ks, eps)[0] for r in ids}
    rises = {r: rise_flags(t, r, src) for r in ids}
    conds = seeds_by_condition(runs.loc[ids])
    rise_conds = {c: [r for r in rs if len(rises[r])] for c, rs in conds.items()}
    rise_conds = {c: rs for c, rs in rise_conds.items() if rs}
    data = {"share_floor_barriers": ({r: count_blocks(m) for r, m in floor_m.items()}, conds)}
    if rise_conds:
        data["share_floor_rises"] = ({r: count_blocks(v) for r, v in rises.items()},
                                     rise_conds)
    n = {"share_floor_barriers": int(sum(np.isfinite(m).sum() for m in floor_m.values())),
         "share_floor_rises": int(sum(len(v) for v in rises.values()))}
    share_k = {f"k{k}": nanmean(np.concatenate([m[:, i] for m in floor_m.values()]))
               for i, k in enumerate(ks)}
    return Inputs(data, ids, steps_used(t, ids, f"barrier_floor_k{ks[0]}"), n,
                  {"ks": ks, "eps": eps}, {"line_source": src, "share_by_k": share_k},
                  "" if rise_conds else f"floor_change or line_{src}_floor_loss at "
                  "consecutive steps", uncorrected_eps_note(t, ids))


C6 = ClaimSpec(
    "C6", "The valley floor has barriers",
    "segments between floor points rise above both ends beyond the noise for a non-trivial "
    "share of (t, k); the floor-loss sequence is non-monotone",
    (Statistic(floor_barriers, shares, (
        PartSpec("share_floor_barriers", "share of (t, k), k in {ks}, with barrier_floor_k > "
                 "{eps}", BARRIER_SHARE, "above", MIN_CELLS),
        PartSpec("share_floor_rises", "share of steps whose floor loss rises by more than "
                 "{eps} (floor_change)", RISE_SHARE, "above", MIN_CELLS))),),
    studies=("barriers",))


# ---------------------------------------------------------------- C7: the explorer passes


@dataclass
class Explorer:
    """C7's data: the explorer's floor and iterate barrier counts of the same steps, and
    its dist_init against the other conditions of its family at matched epochs."""

    both: dict  # explorer run -> Blocks of (floor ones, cells, iterate ones, cells) per step
    with_dist: list[str]  # explorer runs with dist_init
    others: dict  # other condition -> its runs ({} when there is nothing to compare)
    dist: dict  # run -> dist_init at the matched epochs


def explorer_runs(runs, ids) -> list[str]:
    """The runs of the barrier-carrying condition with the largest lr / B (then lr)."""
    cand = runs.loc[ids]
    order = cand.assign(ratio=cand["lr"] / cand["batch_size"]).sort_values(
        ["ratio", "lr"], ascending=False)
    return list(cand.index[cand["condition"] == order["condition"].iloc[0]])


def explorer(t: Tables, runs) -> Inputs | str:
    """C7's inputs: the explorer's barriers on both paths and its distance comparison."""
    ks = [k for k in barrier_ks(t.steps) if k in barrier_ks(t.steps, "iter")]
    ids = [r for r in runs.index
           if any(has_data(t.steps, f"barrier_floor_k{k}", [r]) and
                  has_data(t.steps, f"barrier_iter_k{k}", [r]) for k in ks)]
    src = eps_source(t, ids) if ids else None
    if not ids or src is None:
        return BARRIER_NEEDS.replace("barrier_floor_k*", "barrier_floor_k* and "
                                     "barrier_iter_k*")
    eps = f"line_{src}_eps"
    expl = explorer_runs(runs, ids)
    mats = {r: barrier_flags(t, r, ("floor", "iter"), ks, eps) for r in expl}
    # floor and iterate cells of the same steps, resampled together (a paired comparison)
    both = {r: Blocks(np.concatenate([counts(f), counts(i)], axis=1))
            for r, (f, i) in mats.items()}
    with_dist, others, other_conds, dist = _distances(t, runs, expl)
    data = Explorer(both, with_dist, other_conds, dist)
    cells = int(sum(np.isfinite(f).sum() for f, _ in mats.values()))
    details = {"explorer": runs.loc[expl[0], "label"],
               "iter_share": _path_shares(data, IDENTITY)[1],
               "compared_with": sorted({runs.loc[r, "label"] for r in others})}
    crossing = pick_line_source(t.steps, ("crossing",), expl)
    if crossing:
        details["crossing_share"] = nanmean(
            t.steps.loc[t.steps["run_id"].isin(expl), f"line_{crossing}_crossing"])
    needs = "" if other_conds else ("dist_init on other SGD conditions of the explorer's "
                                    "family (a sweep over lr and B, e.g. `sgdwalk sweep "
                                    "barriers`)")
    return Inputs(data, expl + (others if other_conds else []),
                  steps_used(t, expl, f"barrier_floor_k{ks[0]}"),
                  {"floor_minus_iter_share": cells, "share_floor_barriers": cells,
                   "distance_rank": len(other_conds)}, {"eps": eps}, details, needs,
                  uncorrected_eps_note(t, expl))


def _distances(t: Tables, runs, expl):
    """(explorer runs with dist_init, the other runs of its family (differing in lr, B)
    with dist_init, their conditions ({} when nothing to compare), run -> dist_init at the
    epochs all of them completed)."""
    fam = family_key(runs, ("optim.lr", "optim.batch_size"))
    others = [r for r in runs.index if fam[r] == fam[expl[0]] and r not in expl
              and has_data(t.steps, "dist_init", [r])]
    with_dist = [r for r in expl if has_data(t.steps, "dist_init", [r])]
    conds = seeds_by_condition(runs.loc[others]) if others and with_dist else {}
    if not conds:
        return with_dist, others, {}, {}
    e = min(epochs_completed(t.steps, r, "dist_init") for r in others + with_dist)
    epochs = np.arange(1, e + 1)
    dist = {r: at_epoch_ends(t.steps, r, "dist_init", epochs) for r in others + with_dist}
    return with_dist, others, conds if len(epochs) else {}, dist


def _path_shares(data: Explorer, draw) -> tuple[float, float]:
    """Shares of (t, k) with a barrier on the floor path and on the iterate path, the
    explorer's runs (seeds) and steps resampled together."""
    tot = pooled(data.both, {0: list(data.both)}, draw)
    return tot[0] / tot[1], tot[2] / tot[3]


def explorer_contrasts(data: Explorer, d) -> dict[str, float]:
    """The floor-path share, floor minus iterate share, and the mean sign of (explorer's
    dist_init - another condition's) over matched epochs and the other conditions."""
    f, i = _path_shares(data, d)
    out = {"share_floor_barriers": f, "floor_minus_iter_share": f - i}
    if data.others:
        idx = d.steps(len(next(iter(data.dist.values()))))
        mine = np.mean([data.dist[r][idx] for r in d.seeds(data.with_dist)], axis=0)
        signs = [np.sign(mine - np.mean([data.dist[r][idx] for r in d.seeds(rs)], axis=0))
                 for rs in data.others.values()]
        out["distance_rank"] = nanmean(np.concatenate(signs))
    return out


C7 = ClaimSpec(
    "C7", "Moving above the floor lets SGD travel far from init without being stopped by "
    "those barriers",
    "large-lr / small-B runs: large distance, few barriers on the iterate path despite "
    "barriers on the floor path",
    (Statistic(explorer, explorer_contrasts, (
        PartSpec("floor_minus_iter_share", "share of (t, k) with a barrier on the floor path "
                 "minus the share on the iterate path (explorer runs)", 0.0, "above",
                 MIN_CELLS),
        PartSpec("share_floor_barriers", "share of (t, k) with barrier_floor_k > {eps} "
                 "(explorer runs)", BARRIER_SHARE, "above", MIN_CELLS),
        PartSpec("distance_rank", "mean sign of (explorer's dist_init - another "
                 "condition's) at matched epochs", 0.0))),), studies=("barriers",))
