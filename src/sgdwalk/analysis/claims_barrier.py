"""Claims on barriers: C6 (the valley floor has barriers) and C7 (SGD travels far
without being stopped by them).

A barrier at (t, k) counts when barrier_floor_k{k} (or barrier_iter_k{k}) at step t exceeds
the evaluation noise line_S_eps at step t, S being the first line source (the one the
barrier probe uses).
"""

from __future__ import annotations

import re

import numpy as np

from sgdwalk.analysis.bootstrap import IDENTITY, Blocks, estimate, nanmean
from sgdwalk.analysis.common import (
    eligible,
    excluded_note,
    missing,
    new_claim,
    seeds_by_condition,
    steps_used,
)
from sgdwalk.analysis.tables import (
    Tables,
    at_epoch_ends,
    epochs_completed,
    family_key,
    has_data,
    pick_line_source,
)
from sgdwalk.analysis.verdict import Part

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
    eps at step t, 0 where not, NaN where either is missing. Rows are the run's steps
    (>= 0) with any barrier value, the same rows for every path."""
    rows = t.steps[(t.steps["run_id"] == run_id) & (t.steps["step"] >= 0)]
    e = rows[eps].to_numpy(dtype=float)[:, None]
    out = []
    for path in paths:
        b = rows[[f"barrier_{path}_k{k}" for k in ks]].to_numpy(dtype=float)
        out.append(np.where(np.isfinite(b) & np.isfinite(e), (b > e).astype(float), np.nan))
    keep = np.any([np.isfinite(m).any(axis=1) for m in out], axis=0)
    return [m[keep] for m in out]


def rise_flags(t: Tables, run_id: str, src: str) -> np.ndarray:
    """1 where the floor loss rose beyond eps from step t-1 to t (floor_change > eps_t),
    0 where not; floor_change is recomputed from line_S_floor_loss at consecutive steps
    when the barrier probe did not store it."""
    rows = t.steps[(t.steps["run_id"] == run_id) & (t.steps["step"] >= 0)]
    eps = rows[f"line_{src}_eps"].to_numpy(dtype=float)
    if "floor_change" in rows.columns and np.isfinite(rows["floor_change"].to_numpy(float)).any():
        change = rows["floor_change"].to_numpy(dtype=float)
    else:
        floor = rows[f"line_{src}_floor_loss"].to_numpy(dtype=float) \
            if f"line_{src}_floor_loss" in rows.columns else np.full(len(rows), np.nan)
        consecutive = np.diff(rows["step"].to_numpy(), prepend=-10) == 1
        change = np.where(consecutive, floor - np.roll(floor, 1), np.nan)
    ok = np.isfinite(change) & np.isfinite(eps)
    return (change[ok] > eps[ok]).astype(float)


def _counts(m: np.ndarray) -> np.ndarray:
    """Per row of a flag matrix: (count of 1s, count of non-missing cells)."""
    return np.stack([np.nansum(m, axis=1), np.isfinite(m).sum(axis=1)], axis=1)


def _prepare(mats: dict) -> dict:
    return {r: Blocks(_counts(m)) for r, m in mats.items()}


def _share(blocks: dict, conds: dict, draw) -> float:
    """Share of 1s over the non-missing cells, rows (steps) resampled in blocks within
    runs, seeds within conditions."""
    tot = cnt = 0.0
    for rs in conds.values():
        for r in draw.seeds(rs):
            (ones, cells), _ = draw.total(blocks[r])
            tot, cnt = tot + ones, cnt + cells
    return tot / cnt if cnt else np.nan


def claim_c6(t: Tables, rng, n_boot):
    runs = eligible(t, cid="C6")
    ks = barrier_ks(t.steps)
    ids = [r for r in runs.index if any(has_data(t.steps, f"barrier_floor_k{k}", [r])
                                        for k in ks)]
    src = eps_source(t, ids) if ids else None
    if not ids or src is None:
        return missing("C6", BARRIER_NEEDS)
    eps = f"line_{src}_eps"
    floor_m = {r: barrier_flags(t, r, ("floor",), ks, eps)[0] for r in ids}
    floor = _prepare(floor_m)
    rises = {r: rise_flags(t, r, src) for r in ids}
    rise_b = _prepare({r: v[:, None] for r, v in rises.items()})
    conds = seeds_by_condition(runs.loc[ids])
    rise_conds = {c: [r for r in rs if len(rises[r])] for c, rs in conds.items()}
    rise_conds = {c: rs for c, rs in rise_conds.items() if rs}

    def stat(d):
        out = {"floor": _share(floor, conds, d)}
        if rise_conds:
            out["rise"] = _share(rise_b, rise_conds, d)
        return out

    est = estimate(stat, rng, n_boot)
    cells = int(sum(np.isfinite(m).sum() for m in floor_m.values()))
    parts = [Part.from_estimate(
        "share_floor_barriers", f"share of (t, k), k in {ks}, with barrier_floor_k > {eps}",
        est["floor"], BARRIER_SHARE, "above", cells, MIN_CELLS)]
    needs = ""
    if rise_conds:
        parts.append(Part.from_estimate(
            "share_floor_rises", f"share of steps whose floor loss rises by more than {eps} "
            "(floor_change)", est["rise"], RISE_SHARE, "above",
            int(sum(len(v) for v in rises.values())), MIN_CELLS))
    else:
        needs = f"floor_change or line_{src}_floor_loss at consecutive steps"
    share_k = {f"k{k}": nanmean(np.concatenate([m[:, i] for m in floor_m.values()]))
               for i, k in enumerate(ks)}
    cols = [f"barrier_floor_k{k}" for k in ks[:1]]
    return new_claim("C6", parts=parts, runs=ids, steps=steps_used(t, ids, *cols),
                     details={"line_source": src, "share_by_k": share_k}, needs=needs,
                     notes=excluded_note(t, cid="C6"))


def claim_c7(t: Tables, rng, n_boot):
    runs = eligible(t, cid="C7")
    ks = [k for k in barrier_ks(t.steps) if k in barrier_ks(t.steps, "iter")]
    ids = [r for r in runs.index
           if any(has_data(t.steps, f"barrier_floor_k{k}", [r]) and
                  has_data(t.steps, f"barrier_iter_k{k}", [r]) for k in ks)]
    src = eps_source(t, ids) if ids else None
    if not ids or src is None:
        return missing("C7", BARRIER_NEEDS.replace("barrier_floor_k*", "barrier_floor_k* and "
                                                   "barrier_iter_k*"))
    eps = f"line_{src}_eps"
    # the explorer: the barrier-carrying condition with the largest lr / B (then lr)
    cand = runs.loc[ids]
    order = cand.assign(ratio=cand["lr"] / cand["batch_size"]).sort_values(
        ["ratio", "lr"], ascending=False)
    cond = order["condition"].iloc[0]
    expl = list(cand.index[cand["condition"] == cond])
    mats = {r: barrier_flags(t, r, ("floor", "iter"), ks, eps) for r in expl}
    floor_m = {r: m[0] for r, m in mats.items()}
    # floor and iterate cells of the same steps, resampled together (a paired comparison)
    both = {r: Blocks(np.concatenate([_counts(f), _counts(i)], axis=1))
            for r, (f, i) in mats.items()}

    # distance: the explorer vs every other condition of its family (differing in lr, B)
    fam = family_key(runs, ("optim.lr", "optim.batch_size"))
    others = [r for r in runs.index if fam[r] == fam[expl[0]] and r not in expl
              and has_data(t.steps, "dist_init", [r])]
    with_dist = [r for r in expl if has_data(t.steps, "dist_init", [r])]
    other_conds = seeds_by_condition(runs.loc[others]) if others and with_dist else {}
    dist = {}
    if other_conds:
        e = min(epochs_completed(t.steps, r, "dist_init") for r in others + with_dist)
        epochs = np.arange(1, e + 1)
        dist = {r: at_epoch_ends(t.steps, r, "dist_init", epochs) for r in others + with_dist}
        if not len(epochs):
            other_conds = {}

    def shares(d):
        tot = np.zeros(4)
        for r in d.seeds(both):
            tot += d.total(both[r])[0]
        return tot[0] / tot[1], tot[2] / tot[3]

    def stat(d):
        f, i = shares(d)
        out = {"floor": f, "floor_minus_iter": f - i}
        if other_conds:
            idx = d.steps(len(next(iter(dist.values()))))
            mine = np.mean([dist[r][idx] for r in d.seeds(with_dist)], axis=0)
            signs = [np.sign(mine - np.mean([dist[r][idx] for r in d.seeds(rs)], axis=0))
                     for rs in other_conds.values()]
            out["distance"] = nanmean(np.concatenate(signs))
        return out

    est = estimate(stat, rng, n_boot)
    cells = int(sum(np.isfinite(m).sum() for m in floor_m.values()))
    parts = [
        Part.from_estimate("floor_minus_iter_share", "share of (t, k) with a barrier on the "
                           "floor path minus the share on the iterate path (explorer runs)",
                           est["floor_minus_iter"], 0.0, "above", cells, MIN_CELLS),
        Part.from_estimate("share_floor_barriers", "share of (t, k) with barrier_floor_k > "
                           f"{eps} (explorer runs)", est["floor"], BARRIER_SHARE, "above",
                           cells, MIN_CELLS),
    ]
    needs = ""
    if other_conds:
        parts.append(Part.from_estimate(
            "distance_rank", "mean sign of (explorer's dist_init - another condition's) at "
            "matched epochs", est["distance"], 0.0, "above", len(other_conds)))
    else:
        needs = ("dist_init on other SGD conditions of the explorer's family (a sweep over "
                 "lr and B, e.g. `sgdwalk sweep barriers`)")
    label = runs.loc[expl[0], "label"]
    details = {"explorer": label, "iter_share": shares(IDENTITY)[1],
               "compared_with": sorted({runs.loc[r, "label"] for r in others})}
    crossing = pick_line_source(t.steps, ("crossing",), expl)
    if crossing:
        details["crossing_share"] = nanmean(
            t.steps.loc[t.steps["run_id"].isin(expl), f"line_{crossing}_crossing"])
    used = expl + (others if other_conds else [])
    return new_claim("C7", parts=parts, runs=used,
                     steps=steps_used(t, expl, f"barrier_floor_k{ks[0]}"), details=details,
                     needs=needs, notes=excluded_note(t, cid="C7"))
