"""Claims that compare runs of a sweep along lr and batch size: C3, C4, C5, C11.

Comparisons are made inside *families*: conditions whose configs differ only in the swept
key(s) (tables.family_key). Trends are Kendall-style pair concordances: over every pair of
conditions of a family with different x, the mean of sign(dx) * sign(dy), in [-1, 1];
a condition's value is the mean over its seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sgdwalk.analysis.bootstrap import IDENTITY, estimate, nanmean, pair_signs, rel_diff
from sgdwalk.analysis.common import eligible, excluded_note, missing, new_claim, steps_used
from sgdwalk.analysis.tables import (
    BATCH,
    LR,
    Tables,
    at_epoch_ends,
    epochs_completed,
    family_key,
    has_data,
    height_column,
    series,
    value_at,
)
from sgdwalk.analysis.verdict import Part

MIN_DIFF = 0.1  # C5: relative difference (|a - b| / mean) below which two runs count as equal
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


def per_run(t: Tables, runs, column: str) -> dict[str, np.ndarray]:
    """run -> the finite values of `column` at steps >= 0, in step order."""
    out = {}
    for r in runs.index:
        v = series(t.steps, r, column)[column].to_numpy(dtype=float)
        if len(v):
            out[r] = v
    return out


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


def _fam_details(fams: list[Family], runs) -> list[dict]:
    return [{"conditions": [runs.loc[f.runs[c][0], "label"] for c in f.conds],
             "runs": [r for c in f.conds for r in f.runs[c]],
             "matched_epochs": [int(e) for e in f.epochs[[0, -1]]] if len(f.epochs) else [],
             "matched_steps": [int(s) for s in f.iters[[0, -1]]] if len(f.iters) else []}
            for f in fams]


def claim_c3(t: Tables, rng, n_boot):
    runs = eligible(t, cid="C3")
    col = height_column(t.steps, list(runs.index))
    need = ("line_*_height (walk.line) or econ_height (walk.economy) on SGD runs differing "
            "only in optim.lr, >= 2 learning rates at one batch size (e.g. `sgdwalk sweep "
            "lr-batch`)")
    if col is None:
        return missing("C3", need)
    heights = per_run(t, runs, col)
    fams = with_data(families(runs, (LR,), "lr"), heights)
    if not fams:
        return missing("C3", need)
    est = estimate(lambda d: median_trend(fams, heights, d), rng, n_boot)[""]
    n = sum(len(f.conds) * (len(f.conds) - 1) // 2 for f in fams)
    part = Part.from_estimate("trend_height_lr", f"pair concordance of lr with the median "
                              f"{col} at fixed batch size (Kendall tau)", est, 0.0, "above", n)
    used = [r for f in fams for c in f.conds for r in f.runs[c]]
    details = {"height": col, "families": _fam_details(fams, runs),
               "median_height": {runs.loc[f.runs[c][0], "label"]: float(v) for f in fams
                                 for c, v in zip(f.conds, median_values(f, heights, IDENTITY))}}
    return new_claim("C3", parts=[part], runs=used, steps=steps_used(t, used, col),
                     details=details, notes=excluded_note(t, cid="C3"))


def _distance_families(t: Tables, runs, vary, x):
    dist = per_run(t, runs, "dist_init")
    return matched(t, with_data(families(runs, vary, x), dist), "dist_init")


def claim_c4(t: Tables, rng, n_boot):
    runs = eligible(t, cid="C4")
    fams = _distance_families(t, runs, (BATCH,), "batch_size")
    if not fams:
        return missing("C4", "dist_init (walk.trajectory; preset cheap) on SGD runs differing "
                       "only in optim.batch_size, >= 2 batch sizes at one lr with >= 1 "
                       "completed epoch (e.g. `sgdwalk sweep lr-batch`)")
    vals = checkpoint_values(t, fams, "dist_init")

    def stat(d):
        return {k: checkpoint_trend(fams, vals, k, d, -1.0) for k in ("epochs", "iters")}

    est = estimate(stat, rng, n_boot)
    pairs = sum(len(f.conds) * (len(f.conds) - 1) // 2 for f in fams)
    parts = [
        Part.from_estimate("trend_dist_epochs", "pair concordance of -B with dist_init at "
                           "matched epochs", est["epochs"], 0.0, "above",
                           pairs * min(len(f.epochs) for f in fams)),
        Part.from_estimate("trend_dist_iters", "pair concordance of -B with dist_init at "
                           "matched iterations", est["iters"], 0.0, "above",
                           pairs * min(len(f.iters) for f in fams)),
    ]
    details = {"families": _fam_details(fams, runs)}
    if has_data(t.steps, "path_length"):
        pl = checkpoint_values(t, fams, "path_length")
        details["path_length_trend"] = {k: checkpoint_trend(fams, pl, k, IDENTITY, -1.0)
                                        for k in ("epochs", "iters")}
    used = [r for f in fams for c in f.conds for r in f.runs[c]]
    return new_claim("C4", parts=parts, runs=used, steps=steps_used(t, used, "dist_init"),
                     details=details, notes=excluded_note(t, cid="C4"))


def equal_ratio_pairs(runs) -> list[tuple[int, int]]:
    """(larger-lr condition, smaller-lr condition) pairs of a family (differing only in lr
    and B) with equal lr/B to 1e-6 relative."""
    out = []
    for f in families(runs, (LR, BATCH), "lr"):
        first = {c: runs.loc[f.runs[c][0]] for c in f.conds}
        for i, a in enumerate(f.conds):
            for b in f.conds[i + 1:]:
                ra, rb = (first[a]["lr"] / first[a]["batch_size"],
                          first[b]["lr"] / first[b]["batch_size"])
                if np.isclose(ra, rb, rtol=1e-6, atol=0) and f.x[a] != f.x[b]:
                    out.append((a, b) if f.x[a] > f.x[b] else (b, a))
    return out


def claim_c5(t: Tables, rng, n_boot):
    runs = eligible(t, cid="C5")
    pairs = equal_ratio_pairs(runs)
    dist = per_run(t, runs, "dist_init")
    col = height_column(t.steps, list(runs.index))
    heights = per_run(t, runs, col) if col else {}
    by_cond = {c: list(g.index) for c, g in runs.groupby("condition")}
    pairs_d = [p for p in pairs if all(any(r in dist for r in by_cond[c]) for c in p)]
    pairs_h = [p for p in pairs if all(any(r in heights for r in by_cond[c]) for c in p)]
    if not pairs_d and not pairs_h:
        return missing("C5", "two SGD conditions with equal lr/B (e.g. lr=0.05, B=32 and "
                       "lr=0.1, B=64), otherwise equal, with dist_init and line_*_height "
                       "(e.g. `sgdwalk sweep lr-batch`)")
    with_d = {c: [r for r in rs if r in dist] for c, rs in by_cond.items()}
    with_h = {c: [r for r in rs if r in heights] for c, rs in by_cond.items()}
    common = {}  # pair -> run -> dist_init at the pair's common epochs
    for p in pairs_d:
        rs = [r for c in p for r in with_d[c]]
        e = min(epochs_completed(t.steps, r, "dist_init") for r in rs)
        if e >= 1:
            common[p] = {r: at_epoch_ends(t.steps, r, "dist_init", np.arange(1, e + 1))
                         for r in rs}
    pairs_d = [p for p in pairs_d if p in common]

    def med(c, d):
        rs = d.seeds(with_h[c])
        return np.mean([np.median(heights[r][d.steps(len(heights[r]))]) for r in rs])

    def stat(d):
        out = {}
        if pairs_h:
            out["height"] = nanmean([rel_diff(med(hi, d), med(lo, d)) for hi, lo in pairs_h])
        if pairs_d:
            diffs = []
            for hi, lo in pairs_d:  # exploration: smaller-B (= smaller-lr) run vs larger-B
                vals = common[hi, lo]
                idx = d.steps(len(next(iter(vals.values()))))
                a = np.mean([vals[r][idx] for r in d.seeds(with_d[lo])], axis=0)
                b = np.mean([vals[r][idx] for r in d.seeds(with_d[hi])], axis=0)
                diffs.append(nanmean(rel_diff(a, b)))
            out["explore_signed"] = nanmean(diffs)
            out["explore"] = abs(out["explore_signed"])
        return out

    est = estimate(stat, rng, n_boot)
    parts, notes = [], excluded_note(t, cid="C5")
    if pairs_h:
        parts.append(Part.from_estimate(
            "height_rel_diff", f"relative difference of median {col}, larger-lr "
            "minus smaller-lr run at equal lr/B", est["height"], MIN_DIFF, "above",
            len(pairs_h)))
    if pairs_d:
        parts.append(Part.from_estimate(
            "explore_rel_diff", "|relative difference| of dist_init at matched epochs, "
            "smaller-B vs larger-B run at equal lr/B", est["explore"], MIN_DIFF, "above",
            len(pairs_d)))
    needs = "" if pairs_h and pairs_d else (
        "line_*_height or econ_height on the equal-lr/B runs" if pairs_d
        else "dist_init on the equal-lr/B runs")
    label = runs.groupby("condition")["label"].first()
    used = sorted({r for p in pairs_h + pairs_d for c in p for r in by_cond[c]})
    details = {"pairs": [[label[a], label[b]] for a, b in sorted(set(pairs_h + pairs_d))]}
    if pairs_d:
        details["explore_signed_rel_diff"] = est["explore_signed"].value
    return new_claim("C5", parts=parts, runs=used, steps=steps_used(t, used, "dist_init"),
                     details=details, notes=notes, needs=needs)


def claim_c11(t: Tables, rng, n_boot):
    runs = eligible(t, cid="C11")
    align = per_run(t, runs, "align_topk")
    fams = with_data(families(runs, (BATCH,), "batch_size"), align)
    dist = per_run(t, runs, "dist_init")
    fams = matched(t, with_data(fams, dist), "dist_init")
    if not fams:
        return missing("C11", "align_topk (walk.sharpness; preset curvature or higher) and "
                       "dist_init on SGD runs differing only in optim.batch_size "
                       "(e.g. `sgdwalk sweep alignment`)")
    vals = checkpoint_values(t, fams, "dist_init")

    def stat(d):
        return {"align": median_trend(fams, align, d),
                "dist": checkpoint_trend(fams, vals, "epochs", d, -1.0)}

    est = estimate(stat, rng, n_boot)
    pairs = sum(len(f.conds) * (len(f.conds) - 1) // 2 for f in fams)
    parts = [
        Part.from_estimate("trend_align_batch", "pair concordance of B with the median "
                           "align_topk", est["align"], 0.0, "above", pairs),
        Part.from_estimate("trend_dist_epochs", "pair concordance of -B with dist_init at "
                           "matched epochs", est["dist"], 0.0, "above", pairs),
    ]
    used = [r for f in fams for c in f.conds for r in f.runs[c]]
    return new_claim("C11", parts=parts, runs=used, steps=steps_used(t, used, "align_topk"),
                     details={"families": _fam_details(fams, runs)},
                     notes=excluded_note(t, cid="C11"))
