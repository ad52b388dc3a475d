"""Claims on where runs end up: C8 (flatness and generalisation) and C9 (GD + noise is
not SGD, compared at matched iterations).

A run's *final* value of a metric is the mean of its measurements in the last quarter of
the steps at which it was measured (extended to the last three within the last half when
fewer); the bootstrap resamples those measurements (and seeds within conditions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sgdwalk.analysis.bootstrap import IDENTITY, nanmean, rel_diff, spearman
from sgdwalk.analysis.engine import ClaimSpec, Inputs, PartSpec, Statistic
from sgdwalk.analysis.families import N_ITER_CHECKPOINTS
from sgdwalk.analysis.floors import measured
from sgdwalk.analysis.frames import Tables, family_key, height_column, series, value_at
from sgdwalk.analysis.scope import steps_used

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


# ---------------------------------------------------------------- C8: flatter, better


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


@dataclass
class Finals:
    """C8's data: per condition its runs, per run its final sharpness and test accuracy."""

    conds: dict  # condition -> run ids
    sharp: dict  # run -> final sharp_lambda_max measurements
    acc: dict  # run -> final test_acc measurements
    pairs: list  # dominance pairs of conditions


def flatness(t: Tables, runs):
    """C8's inputs: final sharpness and test accuracy of conditions over an lr x B grid."""
    sharp = {r: v for r in runs.index if len(v := final_values(t, r, "sharp_lambda_max"))}
    acc = {r: v for r in runs.index if len(v := final_values(t, r, "test_acc"))}
    ids = [r for r in runs.index if r in sharp and r in acc]
    sel = runs.loc[ids]
    pairs = dominance_pairs(sel) if ids else []
    if not pairs:
        return ("sharp_lambda_max (walk.sharpness; preset curvature or higher) and test_acc "
                "on SGD runs over an lr x B grid (e.g. `sgdwalk sweep flatness`)")
    data = Finals({c: list(g.index) for c, g in sel.groupby("condition")}, sharp, acc, pairs)
    units = max(max(len(rs) for rs in data.conds.values()),
                min(min(len(sharp[r]), len(acc[r])) for r in ids))
    label = sel.groupby("condition")["label"].first()
    details = {"final": {label[c]: {"sharp_lambda_max": v[0], "test_acc": v[1]}
                         for c, v in condition_finals(data, IDENTITY).items()},
               "pairs": [[label[i], label[j]] for i, j in pairs]}
    n = {"flatter_when_exploring": len(pairs), "better_when_exploring": len(pairs),
         "sharpness_accuracy_anticorrelation": len(data.conds)}
    notes = [] if len(data.conds) >= 3 else ["correlation over the sweep needs >= 3 "
                                             "conditions"]
    return Inputs(data, ids, steps_used(t, ids, "sharp_lambda_max"), n, details=details,
                  notes=notes, blocked="" if units >= 2 else (
                      "no uncertainty estimate: one seed and one final measurement per run"))


def condition_finals(data: Finals, d) -> dict:
    """condition -> (final sharpness, final test_acc), means over (drawn) seeds of the
    means of (drawn) final measurements."""
    out = {}
    for c, rs in data.conds.items():
        chosen = d.seeds(rs)
        out[c] = (np.mean([data.sharp[r][d.steps(len(data.sharp[r]))].mean() for r in chosen]),
                  np.mean([data.acc[r][d.steps(len(data.acc[r]))].mean() for r in chosen]))
    return out


def flatness_signs(data: Finals, d) -> dict[str, float]:
    """Over dominance pairs (i explores more than j): mean sign(sharp_j - sharp_i), mean
    sign(acc_i - acc_j); over >= 3 conditions, -Spearman(sharpness, accuracy)."""
    f = condition_finals(data, d)
    out = {"flatter_when_exploring": nanmean([np.sign(f[j][0] - f[i][0])
                                              for i, j in data.pairs]),
           "better_when_exploring": nanmean([np.sign(f[i][1] - f[j][1])
                                             for i, j in data.pairs])}
    if len(data.conds) >= 3:
        out["sharpness_accuracy_anticorrelation"] = -spearman(
            [v[0] for v in f.values()], [v[1] for v in f.values()])
    return out


C8 = ClaimSpec(
    "C8", "Large lr / small B end in flatter regions that generalise better",
    "lower top Hessian eigenvalue and higher test accuracy for those runs; correlation over "
    "the sweep",
    (Statistic(flatness, flatness_signs, (
        PartSpec("flatter_when_exploring", "mean sign of (sharpness of the less exploring - "
                 "of the more exploring run) over (lr up, B down) pairs", 0.0),
        PartSpec("better_when_exploring", "mean sign of (test_acc of the more exploring - of "
                 "the less exploring run) over the same pairs", 0.0),
        PartSpec("sharpness_accuracy_anticorrelation", "-Spearman correlation of final "
                 "sharpness with final test_acc over conditions", 0.0, "above", 3))),),
    studies=("flatness",))


# ---------------------------------------------------------------- C9: GD + noise is not SGD


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


C9_KEYS = ("dist", "height", "loss", "acc")  # the compared quantities, parts "<key>_differs"


@dataclass
class NoisePairs:
    """C9's data: (SGD condition, GD + noise condition) pairs and their values."""

    pairs: list[tuple[int, int]]
    by_cond: dict  # condition -> run ids
    values: dict  # (pair, key) -> run -> values; all but "height" at shared steps (paired)


def noise_pairs(t: Tables, runs):
    """C9's inputs: SGD vs GD + noise at matched iterations (the same number of updates;
    the noise study gives every variant the same count): distance at common steps, final
    train loss and test accuracy at the same final evaluation steps, median height up to
    the common last step."""
    pairs = [(m, g) for g in noisy_conditions(runs) if (m := match_sgd(runs, g)) is not None]
    if not pairs:
        return ("a GD + noise run (optim.algorithm=gd_noise) and an SGD run with the same lr "
                "(e.g. `sgdwalk sweep noise`)")
    by_cond = {c: list(g.index) for c, g in runs.groupby("condition")}
    hcol = height_column(t.steps, list(runs.index))
    values = {}
    for p in pairs:
        values.update(_pair_values(t, p, by_cond[p[0]] + by_cond[p[1]], hcol))
    data = NoisePairs(pairs, by_cond, values)
    point = noise_differences(data, IDENTITY)
    absent = [k for k in C9_KEYS if f"{k}_differs" not in point]
    label = runs.groupby("condition")["label"].first()
    used = sorted({r for p in pairs for c in p for r in by_cond[c]})
    details = {"pairs": [[label[a], label[b]] for a, b in pairs],
               "signed": {k: float(point[f"{k}_signed"]) for k in C9_KEYS
                          if f"{k}_signed" in point}}
    return Inputs(data, used, steps_used(t, used, "dist_init"),
                  {f"{k}_differs": len(pairs) for k in C9_KEYS}, {"height": hcol}, details,
                  "" if not absent else "inputs for: " + ", ".join(absent))


def _pair_values(t: Tables, p, rs, hcol) -> dict:
    """(p, key) -> run -> values, for each key with a finite value in every run of pair p."""
    last = min(int(t.runs.loc[r, "last_step"]) for r in rs)
    cps = np.unique(np.round(np.linspace(0, last, N_ITER_CHECKPOINTS)).astype(int))
    out = {}
    for key, col in zip(C9_KEYS, ("dist_init", hcol, "train_loss", "test_acc")):
        if col is None:
            continue
        if key == "height":  # measured floors only (floors.measured)
            h, step = measured(t, col), t.steps["step"]
            ok = np.isfinite(h) & (step >= 0) & (step <= last)
            vals = {r: h[ok & (t.steps["run_id"] == r)].to_numpy(float) for r in rs}
        else:
            at = cps if key == "dist" else _final_evals(t, rs, col, last)
            vals = {r: value_at(t.steps, r, col, at) for r in rs}
        if all(np.isfinite(v).any() for v in vals.values()):
            out[p, key] = vals
    return out


def _final_evals(t: Tables, rs, column: str, last: int) -> np.ndarray:
    """Shared steps for comparing final evaluations: the final (final_mask) evaluation
    steps <= last of the run evaluated least often; others are read as of those steps."""
    evals = [series(t.steps, r, column)["step"].to_numpy() for r in rs]
    evals = [e[e <= last] for e in evals]
    fewest = min(evals, key=len)
    return fewest[final_mask(fewest)]


def _side(data: NoisePairs, p, key: str, c: int, d, idx) -> np.ndarray:
    """Condition c's value in pair p: the mean over (drawn) seeds of the median of (drawn)
    heights, or of the values at the (drawn) shared steps idx."""
    per_run = []
    for r in d.seeds(data.by_cond[c]):
        v = data.values[p, key][r]
        per_run.append(np.median(v[d.steps(len(v))]) if key == "height" else v[idx])
    return np.mean(per_run, axis=0)


def noise_differences(data: NoisePairs, d) -> dict[str, float]:
    """Per key, over pairs: mean |rel_diff(SGD, GD + noise)| (|difference| for test_acc)
    as "<key>_differs", and the mean signed one as "<key>_signed"."""
    out = {}
    for key in C9_KEYS:
        diffs = []
        for p in data.pairs:
            if (p, key) not in data.values:
                continue
            idx = d.steps(len(next(iter(data.values[p, key].values()))))
            a, b = (_side(data, p, key, c, d, idx) for c in p)  # sgd, gd_noise
            diffs.append(nanmean(a - b if key == "acc" else rel_diff(a, b)))
        if diffs:
            out[f"{key}_signed"] = nanmean(diffs)
            out[f"{key}_differs"] = nanmean(np.abs(diffs))
    return out


C9 = ClaimSpec(
    "C9", "GD plus isotropic noise of matched size does not behave like SGD",
    "GD + noise vs SGD on distance, height, final loss, test accuracy",
    (Statistic(noise_pairs, noise_differences, (
        PartSpec("dist_differs", "|relative difference| of dist_init at matched iterations, "
                 "SGD vs GD + noise", MIN_DIFF),
        PartSpec("height_differs", "|relative difference| of the median {height}, SGD vs "
                 "GD + noise", MIN_DIFF),
        PartSpec("loss_differs", "|relative difference| of the final train_loss, SGD vs "
                 "GD + noise", MIN_DIFF),
        PartSpec("acc_differs", "|difference| of the final test_acc, SGD vs GD + noise",
                 MIN_ACC_DIFF))),),
    studies=("noise",), algorithms=("sgd", "gd_noise"), combine="any")
