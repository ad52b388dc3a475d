"""Claims of the edge-of-stability study (Cohen et al. 2021): EOS1-EOS4 on full-batch GD runs
trained on the squared error (`train.loss = mse`, `optim.algorithm = gd`).

Every statistic reads r_t = lambda_max x eta / 2 = `sharp_lr_lambda` / 2 (GD is stable
along the top eigenvector while r_t < 1). A run's *onset* is its first measured step with
r_t >= BAND_LO; before it, the run is sharpening, after it, at the edge of stability.
Cross-entropy GD runs of the same study are not judged: Cohen et al. show that their
sharpness leaves 2/eta late in training (the loss goes to 0 and the curvature with it);
EOS2 reports them in a note. The rules and their reasons are in docs/claims.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sgdwalk.analysis.bootstrap import IDENTITY, pair_signs, pooled_median
from sgdwalk.analysis.engine import ClaimSpec, Inputs, PartSpec, Statistic
from sgdwalk.analysis.floors import censored
from sgdwalk.analysis.frames import Tables, pick_line_source, series
from sgdwalk.analysis.scope import meant_for, seeds_by_condition, steps_used
from sgdwalk.analysis.shares import count_blocks, share, shares

BAND_LO, BAND_HI = 0.9, 1.1  # EOS2: lambda_max x eta / 2 "hovers at 2/eta" (Cohen et al.)
SHARE = 0.5  # "most" runs / steps, as C1 and C2
RISE_SHARE = 0.01  # EOS3: "some steps raise the loss", C6's threshold for "the floor rises"
TOLERANCE = 0.1  # EOS4: |a* x eta x kappa - 1|, the band's half-width (same model)
END_FRACTION = 0.05  # EOS3: the loss "at the end" is the median of the last 5% of steps
MIN_STEPS = 10  # measurements behind a share or a median

SHARP = "sharp_lr_lambda"
STUDY = ("edge-of-stability",)
NEEDS = ("sharp_lr_lambda from the sharpness probe (walk.sharpness) on full-batch GD runs "
         "with train.loss = mse (`sgdwalk sweep edge-of-stability`)")


def mse_runs(runs) -> list[str]:
    """The runs trained on the squared error (a run without `train.loss`: cross-entropy)."""
    loss = runs["train.loss"] if "train.loss" in runs.columns else None
    return [r for r in runs.index if loss is not None and loss[r] == "mse"]


def ratios(t: Tables, run_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, lambda_max x eta / 2) at the run's sharpness measurements, in step order."""
    rows = series(t.steps, run_id, SHARP)
    return rows["step"].to_numpy(), rows[SHARP].to_numpy(float) / 2


def onset(r: np.ndarray) -> int | None:
    """Index of the first measurement with r >= BAND_LO, None when the run never gets there."""
    hit = np.flatnonzero(r >= BAND_LO)
    return int(hit[0]) if len(hit) else None


def at_edge(t: Tables, runs) -> dict[str, tuple[np.ndarray, np.ndarray, int | None]]:
    """run -> (steps, r, onset index) for the MSE runs with sharpness measurements."""
    out = {}
    for run in mse_runs(runs):
        steps, r = ratios(t, run)
        if len(r):
            out[run] = (steps, r, onset(r))
    return out


# ---------------------------------------------------------------- EOS1: progressive sharpening


@dataclass
class Sharpening:
    reached: dict  # run -> Blocks of one flag: 1 when its sharpness reached the band
    before: dict  # run -> (steps, lambda_max) up to and including the onset
    conds: dict  # condition -> runs


def sharpening_stats(data: Sharpening, draw) -> dict[str, float]:
    """Share of runs reaching 2/eta; mean over runs of the step-sharpness concordance
    (Kendall pair signs) of the measurements before the onset, steps resampled in blocks."""
    signs = []
    for rs in data.conds.values():
        for run in draw.seeds(rs):
            steps, lam = data.before[run]
            idx = draw.steps(len(steps))
            s = pair_signs(steps[idx], lam[idx])
            if np.isfinite(s).any():
                signs.append(float(np.nanmean(s)))
    return {"share_reaching": share(data.reached, data.conds, draw),
            "rise_concordance": float(np.mean(signs)) if signs else np.nan}


def sharpening(t: Tables, runs) -> Inputs | str:
    """EOS1's inputs: the MSE GD runs that start below the band (r_0 < BAND_LO)."""
    found = at_edge(t, runs)
    if not found:
        return NEEDS
    start = [r for r, (_, ratio, _) in found.items() if ratio[0] >= BAND_LO]
    used = [r for r in found if r not in start]
    if not used:
        return ("an MSE GD run whose sharpness starts below 2/eta (lambda_0 x eta / 2 < "
                f"{BAND_LO:g}; every run here starts at the edge: a smaller optim.lr)")
    before = {}
    for r in used:
        steps, ratio, i = found[r]
        end = len(steps) if i is None else i + 1
        before[r] = (steps[:end].astype(float), ratio[:end] * 2)
    data = Sharpening({r: count_blocks([found[r][2] is not None]) for r in used}, before,
                      seeds_by_condition(runs.loc[used]))
    details = {"onset_step": {r: (None if found[r][2] is None
                                  else int(found[r][0][found[r][2]])) for r in used},
               "start_ratio": {r: float(found[r][1][0]) for r in used}}
    notes = ([f"EOS1 leaves out runs that start at the edge (lambda_0 x eta / 2 >= "
              f"{BAND_LO:g}): {', '.join(start)}"] if start else [])
    return Inputs(data, used, steps_used(t, used, SHARP),
                  {"share_reaching": len(used),
                   "rise_concordance": sum(len(s) for s, _ in before.values())},
                  {"lo": f"{BAND_LO:g}"}, details, notes=notes)


EOS1 = ClaimSpec(
    "EOS1", "Progressive sharpening: under full-batch GD on the squared error the sharpness "
    "rises until it reaches 2/eta",
    f"lambda_max x eta / 2 starts below {BAND_LO:g} and reaches it in most runs; before "
    "that, lambda_max rises with the step (Kendall concordance > 0)",
    (Statistic(sharpening, sharpening_stats, (
        PartSpec("share_reaching", "share of runs whose lambda_max x eta / 2 reaches {lo}",
                 SHARE, "above"),
        PartSpec("rise_concordance", "concordance of step and lambda_max up to the onset "
                 "(mean over runs)", 0.0, "above", MIN_STEPS))),),
    studies=STUDY, algorithms=("gd",))


# ---------------------------------------------------------------- EOS2: at the edge


def cross_entropy_note(t: Tables, cid: str) -> list[str]:
    """What the cross-entropy GD runs of the study do (not judged): where their
    lambda_max x eta / 2 first reached the band and its median over the last quarter."""
    runs = meant_for(t, cid)
    runs = runs[(runs["algorithm"] == "gd") & ~runs["diverged"] & ~runs["failed"]]
    mse = set(mse_runs(runs))
    out = []
    for r in runs.index:
        if r in mse:
            continue
        steps, ratio = ratios(t, r)
        if not len(ratio):
            continue
        i = onset(ratio)
        reach = "never reaches the band" if i is None else \
            f"reaches {ratio[i]:.2f} at step {int(steps[i])}"
        last = float(np.median(ratio[-max(1, len(ratio) // 4):]))
        out.append(f"cross-entropy run {r} (not judged: its sharpness may leave 2/eta late, "
                   f"Cohen et al.): lambda_max x eta / 2 {reach}, median {last:.2f} over "
                   "its last quarter of measurements")
    return out


def in_band(t: Tables, runs) -> Inputs | str:
    """EOS2's inputs: per MSE run that reached the band, its measurements after the onset,
    flagged BAND_LO <= r <= BAND_HI."""
    found = {r: v for r, v in at_edge(t, runs).items() if v[2] is not None}
    if not found:
        return NEEDS + " whose lambda_max x eta / 2 reaches " + f"{BAND_LO:g}"
    blocks, per_run = {}, {}
    for r, (_, ratio, i) in found.items():
        after = ratio[i + 1:]
        blocks[r] = count_blocks((after >= BAND_LO) & (after <= BAND_HI))
        per_run[r] = {"share": float(np.mean((after >= BAND_LO) & (after <= BAND_HI)))
                      if len(after) else None,
                      "median_ratio": float(np.median(after)) if len(after) else None}
    used = list(found)
    data = {"share_in_band": (blocks, seeds_by_condition(runs.loc[used]))}
    return Inputs(data, used, steps_used(t, used, SHARP),
                  {"share_in_band": sum(b.n for b in blocks.values())},
                  {"lo": f"{BAND_LO:g}", "hi": f"{BAND_HI:g}"}, {"per_run": per_run},
                  notes=cross_entropy_note(t, "EOS2"))


EOS2 = ClaimSpec(
    "EOS2", "At the edge of stability: once the sharpness reaches 2/eta it stays there, "
    "lambda_max x eta / 2 within a band around 1",
    f"share of the measurements after the onset with {BAND_LO:g} <= lambda_max x eta / 2 "
    f"<= {BAND_HI:g} > {SHARE:g}",
    (Statistic(in_band, shares, (PartSpec(
        "share_in_band", "share of measurements after the onset with {lo} <= lambda_max x "
        "eta / 2 <= {hi}", SHARE, "above", MIN_STEPS),)),),
    studies=STUDY, algorithms=("gd",))


# ---------------------------------------------------------------- EOS3: the loss still falls


@dataclass
class Falling:
    rises: dict  # run -> Blocks of flags, loss_{t+1} > loss_t after the onset
    fall: dict  # run -> (L(onset) - L_end) / L(onset)
    conds: dict


def falling_stats(data: Falling, draw) -> dict[str, float]:
    falls = [data.fall[r] for rs in data.conds.values() for r in draw.seeds(rs)]
    return {"share_loss_increase": share(data.rises, data.conds, draw),
            "relative_fall": float(np.mean(falls)) if falls else np.nan}


def falling(t: Tables, runs) -> Inputs | str:
    """EOS3's inputs: per MSE run that reached the band, its training loss (`loss`, the
    full-batch loss at theta_t) from the onset on."""
    found = {r: v for r, v in at_edge(t, runs).items() if v[2] is not None}
    rises, fall, details = {}, {}, {}
    for r, (steps, _, i) in found.items():
        rows = series(t.steps, r, "loss")
        loss = rows.loc[rows["step"] >= steps[i], "loss"].to_numpy(float)
        if len(loss) < 2:
            continue
        rises[r] = count_blocks(np.diff(loss) > 0)
        end = float(np.median(loss[-max(1, round(END_FRACTION * len(loss))):]))
        fall[r] = (loss[0] - end) / loss[0]
        details[r] = {"onset_step": int(steps[i]), "loss_at_onset": float(loss[0]),
                      "loss_at_end": end}
    if not rises:
        return NEEDS + " whose lambda_max x eta / 2 reaches " + f"{BAND_LO:g}, and `loss`"
    used = list(rises)
    return Inputs(Falling(rises, fall, seeds_by_condition(runs.loc[used])), used,
                  steps_used(t, used, "loss"),
                  {"share_loss_increase": sum(b.n for b in rises.values()),
                   "relative_fall": len(used)},
                  {"f": f"{END_FRACTION:.0%}"}, {"per_run": details})


EOS3 = ClaimSpec(
    "EOS3", "At the edge of stability the loss keeps falling over long horizons, but not "
    "monotonically",
    f"after the onset some steps raise the loss (share > {RISE_SHARE:g}), and the loss at "
    "the end is below the loss at the onset",
    (Statistic(falling, falling_stats, (
        PartSpec("share_loss_increase", "share of steps after the onset with loss_t+1 > "
                 "loss_t", RISE_SHARE, "above", MIN_STEPS),
        PartSpec("relative_fall", "(L(onset) - L_end) / L(onset), L_end the median loss of "
                 "the last {f} of steps (mean over runs)", 0.0, "above"))),),
    studies=STUDY, algorithms=("gd",))


# ---------------------------------------------------------------- EOS4: the floor is 1/(eta kappa)


def floor_match(t: Tables, runs) -> Inputs | str:
    """EOS4's inputs: per MSE run, |a* x eta x kappa - 1| at the steps with a measured floor
    strictly inside the step (0 < a* < 1, not censored) and kappa > 0."""
    ids = mse_runs(runs)
    src = pick_line_source(t.steps, ("floor_a",), ids)
    if src is None or not ids:
        return ("line_*_floor_a from the line probe and curv_lr_kappa from the curvature "
                "probe on full-batch GD runs with train.loss = mse "
                "(`sgdwalk sweep edge-of-stability`)")
    fa = f"line_{src}_floor_a"
    ok = censored(t, src) != 1
    mism, details = {}, {}
    for r in ids:
        rows = series(t.steps, r, fa, "curv_lr_kappa")
        rows = rows[ok[rows.index].to_numpy(bool)]
        a, lk = rows[fa].to_numpy(float), rows["curv_lr_kappa"].to_numpy(float)
        keep = (a > 0) & (a < 1) & (lk > 0)
        if keep.any():
            mism[r] = np.abs(a[keep] * lk[keep] - 1)
            details[r] = {"steps": int(keep.sum()), "median_floor_a": float(np.median(a[keep])),
                          "median_predicted": float(np.median(1 / lk[keep]))}
    if not mism:
        return ("steps with a measured interior floor (0 < line_*_floor_a < 1) and "
                "curv_lr_kappa > 0 on an MSE GD run (walk.line and walk.curvature)")
    used = list(mism)
    conds = seeds_by_condition(runs.loc[used])
    within = float(np.mean(np.concatenate(list(mism.values())) <= TOLERANCE))
    return Inputs((mism, conds), used, steps_used(t, used, fa, "curv_lr_kappa"),
                  {"median_mismatch": sum(len(v) for v in mism.values())},
                  {"src": src},
                  {"line_source": src, "per_run": details, "share_within": within,
                   "median_mismatch": pooled_median(mism, conds, IDENTITY)})


EOS4 = ClaimSpec(
    "EOS4", "On GD steps the line's floor lies where the quadratic model along the step puts "
    "it, a* = 1 / (eta kappa), kappa the curvature along the step",
    f"median over interior floors of |a* x eta x kappa - 1| < {TOLERANCE:g}",
    (Statistic(floor_match, lambda d, draw: {"median_mismatch": pooled_median(*d, draw)}, (
        PartSpec("median_mismatch", "median over steps with a measured floor in (0, 1) of "
                 "|a* x eta x kappa - 1| (line_{src}_floor_a, curv_lr_kappa)", TOLERANCE,
                 "below", MIN_STEPS),)),),
    studies=STUDY, algorithms=("gd",))
