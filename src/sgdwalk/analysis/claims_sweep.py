"""Claims that compare runs of a sweep along lr and batch size: C3, C4, C5, C11.

Comparisons are made inside families of conditions (families.py): trends are pair
concordances of the swept value with a condition's median (C3, C11) or with its distance
at matched checkpoints (C4, C11); C5 compares pairs of conditions with equal lr/B.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sgdwalk.analysis.bootstrap import IDENTITY, nanmean, rel_diff
from sgdwalk.analysis.engine import ClaimSpec, Inputs, PartSpec, Statistic
from sgdwalk.analysis.families import (
    checkpoint_trend,
    checkpoint_values,
    families,
    family_details,
    family_runs,
    matched,
    median_trend,
    median_values,
    n_pairs,
    per_run,
    with_data,
)
from sgdwalk.analysis.frames import (
    BATCH,
    LR,
    Tables,
    at_epoch_ends,
    epochs_completed,
    has_data,
    height_column,
)
from sgdwalk.analysis.scope import steps_used

MIN_DIFF = 0.1  # C5: relative difference (|a - b| / mean) below which two runs count as equal


# ---------------------------------------------------------------- C3: height grows with lr


def heights_over_lr(t: Tables, runs) -> Inputs | str:
    """C3's inputs: per run its heights, in families of conditions differing only in lr."""
    col = height_column(t.steps, list(runs.index))
    heights = per_run(t, runs, col) if col else {}
    fams = with_data(families(runs, (LR,), "lr"), heights) if col else []
    if not fams:
        return ("line_*_height (walk.line) or econ_height (walk.economy) on SGD runs "
                "differing only in optim.lr, >= 2 learning rates at one batch size (e.g. "
                "`sgdwalk sweep lr-batch`)")
    used = family_runs(fams)
    medians = {runs.loc[f.runs[c][0], "label"]: float(v) for f in fams
               for c, v in zip(f.conds, median_values(f, heights, IDENTITY))}
    return Inputs((fams, heights), used, steps_used(t, used, col),
                  {"trend_height_lr": n_pairs(fams)}, {"col": col},
                  {"height": col, "families": family_details(fams, runs),
                   "median_height": medians})


def height_trend(data, draw) -> dict[str, float]:
    fams, heights = data
    return {"trend_height_lr": median_trend(fams, heights, draw)}


C3 = ClaimSpec(
    "C3", "A larger learning rate keeps SGD higher above the floor",
    "median height grows with lr at fixed batch size, across seeds",
    (Statistic(heights_over_lr, height_trend, (PartSpec(
        "trend_height_lr", "pair concordance of lr with the median {col} at fixed batch "
        "size (Kendall tau)", 0.0),)),), studies=("lr-batch",))


# ---------------------------------------------------------------- C4: distance shrinks with B


def distance_families(t: Tables, runs, vary, x):
    """Families over `vary` of runs with dist_init, with their matched checkpoints."""
    dist = per_run(t, runs, "dist_init")
    return matched(t, with_data(families(runs, vary, x), dist), "dist_init")


def distance_over_batch(t: Tables, runs) -> Inputs | str:
    """C4's inputs: dist_init at matched epochs and iterations, in families over B."""
    fams = distance_families(t, runs, (BATCH,), "batch_size")
    if not fams:
        return ("dist_init (walk.trajectory; preset cheap) on SGD runs differing only in "
                "optim.batch_size, >= 2 batch sizes at one lr with >= 1 completed epoch "
                "(e.g. `sgdwalk sweep lr-batch`)")
    vals = checkpoint_values(t, fams, "dist_init")
    details = {"families": family_details(fams, runs)}
    if has_data(t.steps, "path_length"):
        pl = checkpoint_values(t, fams, "path_length")
        details["path_length_trend"] = {k: checkpoint_trend(fams, pl, k, IDENTITY, -1.0)
                                        for k in ("epochs", "iters")}
    used, pairs = family_runs(fams), n_pairs(fams)
    n = {"trend_dist_epochs": pairs * min(len(f.epochs) for f in fams),
         "trend_dist_iters": pairs * min(len(f.iters) for f in fams)}
    return Inputs((fams, vals), used, steps_used(t, used, "dist_init"), n, details=details)


def distance_trends(data, draw) -> dict[str, float]:
    fams, vals = data
    return {f"trend_dist_{k}": checkpoint_trend(fams, vals, k, draw, -1.0)
            for k in ("epochs", "iters")}


C4 = ClaimSpec(
    "C4", "A smaller batch size injects noise and makes SGD explore more",
    "distance from init ordered by batch size at fixed lr, at matched epochs and matched "
    "iterations",
    (Statistic(distance_over_batch, distance_trends, (
        PartSpec("trend_dist_epochs", "pair concordance of -B with dist_init at matched "
                 "epochs", 0.0),
        PartSpec("trend_dist_iters", "pair concordance of -B with dist_init at matched "
                 "iterations", 0.0))),), studies=("lr-batch",))


# ---------------------------------------------------------------- C5: equal lr/B differ


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


@dataclass
class RatioPairs:
    """C5's data: the equal-lr/B pairs compared on height and on distance."""

    pairs_h: list  # (larger-lr, smaller-lr) condition pairs with heights on both sides
    pairs_d: list  # ... with dist_init at >= 1 common epoch
    heights: dict  # run -> heights
    with_h: dict  # condition -> its runs with heights
    with_d: dict  # condition -> its runs with dist_init
    common: dict  # pair -> run -> dist_init at the pair's common epochs


def equal_ratio(t: Tables, runs) -> Inputs | str:
    """C5's inputs: conditions with equal lr/B, with heights and distances."""
    pairs = equal_ratio_pairs(runs)
    dist = per_run(t, runs, "dist_init")
    col = height_column(t.steps, list(runs.index))
    heights = per_run(t, runs, col) if col else {}
    by_cond = {c: list(g.index) for c, g in runs.groupby("condition")}
    pairs_d = [p for p in pairs if all(any(r in dist for r in by_cond[c]) for c in p)]
    pairs_h = [p for p in pairs if all(any(r in heights for r in by_cond[c]) for c in p)]
    if not pairs_d and not pairs_h:
        return ("two SGD conditions with equal lr/B (e.g. lr=0.05, B=32 and lr=0.1, B=64), "
                "otherwise equal, with dist_init and line_*_height (e.g. `sgdwalk sweep "
                "lr-batch`)")
    with_d = {c: [r for r in rs if r in dist] for c, rs in by_cond.items()}
    common = _common_epochs(t, pairs_d, with_d)
    data = RatioPairs(pairs_h, [p for p in pairs_d if p in common], heights,
                      {c: [r for r in rs if r in heights] for c, rs in by_cond.items()},
                      with_d, common)
    label = runs.groupby("condition")["label"].first()
    compared = data.pairs_h + data.pairs_d
    used = sorted({r for p in compared for c in p for r in by_cond[c]})
    details = {"pairs": [[label[a], label[b]] for a, b in sorted(set(compared))]}
    if data.pairs_d:
        details["explore_signed_rel_diff"] = float(equal_ratio_diffs(data, IDENTITY)[
            "explore_signed"])
    needs = "" if data.pairs_h and data.pairs_d else (
        "line_*_height or econ_height on the equal-lr/B runs" if data.pairs_d
        else "dist_init on the equal-lr/B runs")
    return Inputs(data, used, steps_used(t, used, "dist_init"),
                  {"height_rel_diff": len(data.pairs_h), "explore_rel_diff": len(data.pairs_d)},
                  {"col": col}, details, needs)


def _common_epochs(t: Tables, pairs, with_d) -> dict:
    """pair -> run -> dist_init at the epochs every run of the pair completed (>= 1)."""
    common = {}
    for p in pairs:
        rs = [r for c in p for r in with_d[c]]
        e = min(epochs_completed(t.steps, r, "dist_init") for r in rs)
        if e >= 1:
            common[p] = {r: at_epoch_ends(t.steps, r, "dist_init", np.arange(1, e + 1))
                         for r in rs}
    return common


def equal_ratio_diffs(data: RatioPairs, d) -> dict[str, float]:
    """Mean over pairs of rel_diff(median height of the larger-lr condition, of the
    smaller-lr one); |mean over pairs of the mean over common epochs of rel_diff(dist_init
    of the smaller-B condition, of the larger-B one)| (explore_signed: without | |)."""
    def med(c):
        rs = d.seeds(data.with_h[c])
        return np.mean([np.median(data.heights[r][d.steps(len(data.heights[r]))])
                        for r in rs])

    out = {}
    if data.pairs_h:
        out["height_rel_diff"] = nanmean([rel_diff(med(hi), med(lo))
                                          for hi, lo in data.pairs_h])
    if data.pairs_d:
        diffs = []
        for hi, lo in data.pairs_d:  # exploration: smaller-B (= smaller-lr) run vs larger-B
            vals = data.common[hi, lo]
            idx = d.steps(len(next(iter(vals.values()))))
            a = np.mean([vals[r][idx] for r in d.seeds(data.with_d[lo])], axis=0)
            b = np.mean([vals[r][idx] for r in d.seeds(data.with_d[hi])], axis=0)
            diffs.append(nanmean(rel_diff(a, b)))
        out["explore_signed"] = nanmean(diffs)
        out["explore_rel_diff"] = abs(out["explore_signed"])
    return out


C5 = ClaimSpec(
    "C5", "lr and batch size play different roles: lr/B alone does not fix the dynamics",
    "runs with equal lr/B differ in height (driven by lr) and in exploration (driven by B)",
    (Statistic(equal_ratio, equal_ratio_diffs, (
        PartSpec("height_rel_diff", "relative difference of median {col}, larger-lr minus "
                 "smaller-lr run at equal lr/B", MIN_DIFF),
        PartSpec("explore_rel_diff", "|relative difference| of dist_init at matched epochs, "
                 "smaller-B vs larger-B run at equal lr/B", MIN_DIFF))),),
    studies=("lr-batch",))


# ---------------------------------------------------------------- C11: alignment grows with B


def alignment_over_batch(t: Tables, runs) -> Inputs | str:
    """C11's inputs: align_topk per run and dist_init at matched epochs, families over B."""
    align = per_run(t, runs, "align_topk")
    fams = with_data(families(runs, (BATCH,), "batch_size"), align)
    fams = matched(t, with_data(fams, per_run(t, runs, "dist_init")), "dist_init")
    if not fams:
        return ("align_topk (walk.sharpness; preset curvature or higher) and dist_init on "
                "SGD runs differing only in optim.batch_size (e.g. `sgdwalk sweep "
                "alignment`)")
    used, pairs = family_runs(fams), n_pairs(fams)
    return Inputs((fams, align, checkpoint_values(t, fams, "dist_init")), used,
                  steps_used(t, used, "align_topk"),
                  {"trend_align_batch": pairs, "trend_dist_epochs": pairs},
                  details={"families": family_details(fams, runs)})


def alignment_trends(data, draw) -> dict[str, float]:
    fams, align, dist = data
    return {"trend_align_batch": median_trend(fams, align, draw),
            "trend_dist_epochs": checkpoint_trend(fams, dist, "epochs", draw, -1.0)}


C11 = ClaimSpec(
    "C11", "Gradients of larger batches align more with the top Hessian eigenvectors and "
    "explore less", "alignment grows with B while distance shrinks",
    (Statistic(alignment_over_batch, alignment_trends, (
        PartSpec("trend_align_batch", "pair concordance of B with the median align_topk",
                 0.0),
        PartSpec("trend_dist_epochs", "pair concordance of -B with dist_init at matched "
                 "epochs", 0.0))),), studies=("alignment",))
