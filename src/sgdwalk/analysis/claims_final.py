"""Claims on where runs end up: C8 (flatness and generalisation) and C9 (GD + noise is
not SGD, compared at matched iterations).

A run's *final* value of a metric is the mean of its measurements in the last quarter of
the steps at which it was measured (extended to the last three within the last half when
fewer); the bootstrap resamples
those measurements (and seeds within conditions).
"""

from __future__ import annotations

import numpy as np

from sgdwalk.analysis.bootstrap import IDENTITY, estimate, nanmean, rel_diff, spearman
from sgdwalk.analysis.common import eligible, excluded_note, missing, new_claim, steps_used
from sgdwalk.analysis.tables import Tables, family_key, height_column, series, value_at
from sgdwalk.analysis.verdict import Part

FINAL_FRACTION = 0.25  # "final": measurements in the last quarter of the measured steps...
FINAL_MIN = 3  # ...extended to the last 3 when fewer, within the last half of the span
MIN_DIFF = 0.1  # C9: relative difference of distance, height, loss counted as "differ"
MIN_ACC_DIFF = 0.01  # C9: test accuracy difference (1 point) counted as "differ"


def final_mask(s: np.ndarray) -> np.ndarray:
    """Of sorted measurement steps s, the final ones: the last quarter of the span; when
    those are fewer than FINAL_MIN, the last FINAL_MIN within the last half of the span."""
    if not len(s):
        return np.zeros(0, bool)
    first, last = s.min(), s.max()
    keep = s >= last - FINAL_FRACTION * (last - first)
    if keep.sum() < FINAL_MIN:
        keep[-FINAL_MIN:] = True
        keep &= s >= last - 0.5 * (last - first)
    return keep


def final_values(t: Tables, run_id: str, column: str) -> np.ndarray:
    """The final measurements of `column` (final_mask of its measured steps)."""
    rows = series(t.steps, run_id, column)
    return rows[column].to_numpy(dtype=float)[final_mask(rows["step"].to_numpy())]


def dominance_pairs(runs) -> list[tuple[int, int]]:
    """(i, j) condition pairs of one family (differing only in lr and B) where i is the
    more exploring: lr_i >= lr_j and B_i <= B_j, not both equal."""
    out = []
    fam = family_key(runs, ("optim.lr", "optim.batch_size"))
    first = runs.groupby("condition").first()
    fam_of = runs.groupby("condition").apply(lambda g: fam[g.index[0]])
    conds = list(first.index)
    for a in conds:
        for b in conds:
            if a == b or fam_of[a] != fam_of[b]:
                continue
            la, lb = first.loc[a, "lr"], first.loc[b, "lr"]
            ba, bb = first.loc[a, "batch_size"], first.loc[b, "batch_size"]
            if la >= lb and ba <= bb and (la, ba) != (lb, bb):
                out.append((a, b))
    return out


def claim_c8(t: Tables, rng, n_boot):
    runs = eligible(t, cid="C8")
    sharp = {r: v for r in runs.index if len(v := final_values(t, r, "sharp_lambda_max"))}
    acc = {r: v for r in runs.index if len(v := final_values(t, r, "test_acc"))}
    ids = [r for r in runs.index if r in sharp and r in acc]
    sel = runs.loc[ids]
    pairs = dominance_pairs(sel) if ids else []
    if not pairs:
        return missing("C8", "sharp_lambda_max (walk.sharpness; preset curvature or higher) "
                       "and test_acc on SGD runs over an lr x B grid (e.g. `sgdwalk sweep "
                       "flatness`)")
    conds = {c: list(g.index) for c, g in sel.groupby("condition")}

    def finals(d):
        out = {}
        for c, rs in conds.items():
            chosen = d.seeds(rs)
            out[c] = (np.mean([sharp[r][d.steps(len(sharp[r]))].mean() for r in chosen]),
                      np.mean([acc[r][d.steps(len(acc[r]))].mean() for r in chosen]))
        return out

    def stat(d):
        f = finals(d)
        out = {"sharp": nanmean([np.sign(f[j][0] - f[i][0]) for i, j in pairs]),
               "acc": nanmean([np.sign(f[i][1] - f[j][1]) for i, j in pairs])}
        if len(conds) >= 3:
            out["corr"] = -spearman([v[0] for v in f.values()], [v[1] for v in f.values()])
        return out

    est = estimate(stat, rng, n_boot)
    units = max(max(len(rs) for rs in conds.values()),
                min(min(len(sharp[r]), len(acc[r])) for r in ids))
    blocked = "" if units >= 2 else ("no uncertainty estimate: one seed and one final "
                                     "measurement per run")
    parts = [
        Part.from_estimate("flatter_when_exploring", "mean sign of (sharpness of the less "
                           "exploring - of the more exploring run) over (lr up, B down) pairs",
                           est["sharp"], 0.0, "above", len(pairs), blocked=blocked),
        Part.from_estimate("better_when_exploring", "mean sign of (test_acc of the more "
                           "exploring - of the less exploring run) over the same pairs",
                           est["acc"], 0.0, "above", len(pairs), blocked=blocked),
    ]
    notes = excluded_note(t, cid="C8")
    if "corr" in est:
        parts.append(Part.from_estimate("sharpness_accuracy_anticorrelation", "-Spearman "
                                        "correlation of final sharpness with final test_acc "
                                        "over conditions", est["corr"], 0.0, "above",
                                        len(conds), 3, blocked=blocked))
    else:
        notes.append("correlation over the sweep needs >= 3 conditions")
    label = sel.groupby("condition")["label"].first()
    f = finals(IDENTITY)
    details = {"final": {label[c]: {"sharp_lambda_max": v[0], "test_acc": v[1]}
                         for c, v in f.items()},
               "pairs": [[label[i], label[j]] for i, j in pairs]}
    return new_claim("C8", parts=parts, runs=ids, steps=steps_used(t, ids, "sharp_lambda_max"),
                     details=details, notes=notes)


def match_sgd(runs, noisy_cond: int) -> int | None:
    """The SGD condition a GD + noise condition is compared with: same lr and batch size
    = its optim.noise_batch when there is one, else the same lr, else None."""
    g = runs[runs["condition"] == noisy_cond].iloc[0]
    sgd = runs[runs["algorithm"] == "sgd"]
    same_lr = sgd[np.isclose(sgd["lr"], g["lr"])]
    if "optim.noise_batch" in runs.columns and len(same_lr):
        hit = same_lr[same_lr["batch_size"] == g["optim.noise_batch"]]
        if len(hit):
            return int(hit["condition"].iloc[0])
    return int(same_lr["condition"].iloc[0]) if len(same_lr) else None


def noisy_conditions(runs) -> list[int]:
    """GD + noise conditions to test: those with matched noise (optim.noise = "matched",
    what the claim is about) when there are any, else all."""
    noisy = runs[runs["algorithm"] == "gd_noise"]
    if "optim.noise" in runs.columns and (noisy["optim.noise"] == "matched").any():
        noisy = noisy[noisy["optim.noise"] == "matched"]
    return sorted(noisy["condition"].unique())


C9_TEXT = {"dist": "|relative difference| of dist_init at matched iterations",
           "height": "|relative difference| of the median height",
           "loss": "|relative difference| of the final train_loss",
           "acc": "|difference| of the final test_acc"}


def _final_evals(t: Tables, rs, column: str, last: int) -> np.ndarray:
    """Shared steps for comparing final evaluations: the final (final_mask) evaluation
    steps <= last of the run evaluated least often; others are read as of those steps."""
    evals = [series(t.steps, r, column)["step"].to_numpy() for r in rs]
    evals = [e[e <= last] for e in evals]
    fewest = min(evals, key=len)
    return fewest[final_mask(fewest)]


def claim_c9(t: Tables, rng, n_boot):
    """SGD vs GD + noise at matched iterations (the same number of updates; the noise study
    gives every variant the same count): distance at common steps, final train loss and
    test accuracy at the same final evaluation steps, median height up to the common last
    step."""
    runs = eligible(t, ("sgd", "gd_noise"), "C9")
    pairs = [(m, g) for g in noisy_conditions(runs) if (m := match_sgd(runs, g)) is not None]
    if not pairs:
        return missing("C9", "a GD + noise run (optim.algorithm=gd_noise) and an SGD run with "
                       "the same lr (e.g. `sgdwalk sweep noise`)")
    by_cond = {c: list(g.index) for c, g in runs.groupby("condition")}
    hcol = height_column(t.steps, list(runs.index))
    data = {}  # (pair, key) -> run -> values; all but "height" at shared steps (paired)
    for p in pairs:
        rs = by_cond[p[0]] + by_cond[p[1]]
        last = min(int(t.runs.loc[r, "last_step"]) for r in rs)
        cps = np.unique(np.round(np.linspace(0, last, 20)).astype(int))
        for key, col in (("dist", "dist_init"), ("height", hcol), ("loss", "train_loss"),
                         ("acc", "test_acc")):
            if col is None:
                continue
            if key == "height":
                vals = {r: (v := series(t.steps, r, col))[col].to_numpy(float)[
                    v["step"].to_numpy() <= last] for r in rs}
            else:
                at = cps if key == "dist" else _final_evals(t, rs, col, last)
                vals = {r: value_at(t.steps, r, col, at) for r in rs}
            if all(np.isfinite(v).any() for v in vals.values()):
                data[p, key] = vals

    def side(p, key, c, d, idx=None):
        vals = data[p, key]
        per_run = []
        for r in d.seeds(by_cond[c]):
            v = vals[r]
            if key == "height":
                per_run.append(np.median(v[d.steps(len(v))]))
            else:
                per_run.append(v[idx])
        return np.mean(per_run, axis=0)

    def stat(d):
        out = {}
        for key in C9_TEXT:
            diffs = []
            for p in pairs:
                if (p, key) not in data:
                    continue
                idx = d.steps(len(next(iter(data[p, key].values()))))
                a, b = (side(p, key, c, d, idx) for c in p)  # sgd, gd_noise
                diffs.append(nanmean(a - b if key == "acc" else rel_diff(a, b)))
            if diffs:
                out[key + "_signed"] = nanmean(diffs)
                out[key] = nanmean(np.abs(diffs))
        return out

    est = estimate(stat, rng, n_boot)
    parts = []
    for key, text in C9_TEXT.items():
        if key in est:
            thr = MIN_ACC_DIFF if key == "acc" else MIN_DIFF
            if key == "height":
                text = text.replace("the median height", f"the median {hcol}")
            parts.append(Part.from_estimate(f"{key}_differs", f"{text}, SGD vs GD + noise",
                                            est[key], thr, "above", len(pairs)))
    absent = [k for k in C9_TEXT if k not in est]
    label = runs.groupby("condition")["label"].first()
    used = sorted({r for p in pairs for c in p for r in by_cond[c]})
    details = {"pairs": [[label[a], label[b]] for a, b in pairs],
               "signed": {k: est[k + "_signed"].value for k in C9_TEXT if k + "_signed" in est}}
    return new_claim("C9", parts=parts, combine="any", runs=used,
                     steps=steps_used(t, used, "dist_init"), details=details,
                     needs=("" if not absent else "inputs for: " + ", ".join(absent)),
                     notes=excluded_note(t, ("sgd", "gd_noise"), "C9"))
