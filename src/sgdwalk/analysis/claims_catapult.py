"""Claims of the catapult study (Lewkowycz et al. 2020): CAT1-CAT3 on full-batch GD runs
whose step size is set relative to the sharpness at initialisation, c = eta x lambda_0.

c of a run is lr x lambda_0 as its trainer recorded them (meta.json `lr`, `lambda0`, written
when `optim.lr_over_lambda0` set the lr), else `sharp_lr_lambda` measured at step 0. The
regimes: *lazy* c < 2, *catapult* 2 < c < CATAPULT_HI, *divergent* c >= DIVERGE_LO; runs
in between are in no regime and are not judged. The rules and their reasons are in
docs/claims.md.
"""

from __future__ import annotations

import math

import numpy as np

from sgdwalk.analysis.bootstrap import pooled_median
from sgdwalk.analysis.engine import ClaimSpec, Inputs, PartSpec, Statistic
from sgdwalk.analysis.frames import Tables, series
from sgdwalk.analysis.scope import meant_for, seeds_by_condition, steps_used
from sgdwalk.analysis.shares import count_blocks, shares

LAZY_HI = 2.0  # c below: the linearised model's loss falls at every step (no spike)
CATAPULT_HI = 4.0  # c in (2, 4): the catapult of Lewkowycz et al.'s solvable model
DIVERGE_LO = 12.0  # c at or above: beyond their eta_max ~ 12 / lambda_0 for ReLU networks
SPIKE_FACTOR = 2.0  # a spike: the loss of the first SPIKE_STEPS steps exceeds 2 x L(theta_0)
SPIKE_STEPS = 100  # the catapult happens early (within tens of steps in their figures)
FINAL_FRACTION = 0.25  # CAT2: the last quarter of the sharpness measurements
MIN_FINAL = 3  # CAT2: measurements at least
SHARE = 0.5

SHARP = "sharp_lr_lambda"
STUDY = ("catapult",)
NEEDS = ("eta x lambda_0 of full-batch GD runs (optim.lr_over_lambda0, or sharp_lr_lambda "
         "at step 0 from walk.sharpness) and their `loss` (`sgdwalk sweep catapult`)")


def c_of(t: Tables, run_id: str) -> float:
    """eta x lambda_0 of a run: the trainer's record, else the sharpness probe at step 0."""
    meta = t.meta(run_id)
    lam, lr = meta.get("lambda0"), meta.get("lr")
    if isinstance(lam, (int, float)) and isinstance(lr, (int, float)):
        return float(lam) * float(lr)
    rows = series(t.steps, run_id, SHARP)
    rows = rows[rows["step"] == 0]
    return float(rows[SHARP].iloc[0]) if len(rows) else math.nan


def regime(c: float) -> str | None:
    if c < LAZY_HI:
        return "lazy"
    if LAZY_HI < c < CATAPULT_HI:
        return "catapult"
    if c >= DIVERGE_LO:
        return "divergent"
    return None


def regimes(t: Tables, run_ids) -> dict[str, tuple[float, str | None]]:
    """run -> (c, regime) for the runs whose c is known."""
    return {r: (c, regime(c)) for r in run_ids if math.isfinite(c := c_of(t, r))}


def spike(t: Tables, run_id: str) -> tuple[float, bool] | None:
    """(max loss of the first SPIKE_STEPS steps / L(theta_0), that ratio > SPIKE_FACTOR), or
    None without the loss at step 0."""
    rows = series(t.steps, run_id, "loss")
    first = rows.loc[rows["step"] < SPIKE_STEPS, ["step", "loss"]]
    if not len(first) or first["step"].iloc[0] != 0:
        return None
    ratio = float(first["loss"].max() / first["loss"].iloc[0])
    return ratio, ratio > SPIKE_FACTOR


# ---------------------------------------------------------------- CAT1: a spike iff 2 < c < 4


def spikes(t: Tables, runs) -> Inputs | str:
    """CAT1's inputs: per lazy and catapult run (not diverged), one flag: it spiked."""
    found = {r: v for r, v in regimes(t, runs.index).items() if v[1] in ("lazy", "catapult")}
    flags = {"lazy": {}, "catapult": {}}
    details = {}
    for r, (c, reg) in found.items():
        got = spike(t, r)
        if got is not None:
            flags[reg][r] = count_blocks([got[1]])
            details[r] = {"c": c, "regime": reg, "max_loss_over_initial": got[0]}
    if not flags["lazy"] and not flags["catapult"]:
        return NEEDS + f" with eta x lambda_0 below {LAZY_HI:g} and between {LAZY_HI:g} " \
            f"and {CATAPULT_HI:g}"
    data = {f"share_spike_{reg}": (f, seeds_by_condition(runs.loc[list(f)]))
            for reg, f in flags.items() if f}
    missing = [f"a run with eta x lambda_0 {w}" for reg, w in
               (("lazy", f"< {LAZY_HI:g}"), ("catapult", f"in ({LAZY_HI:g}, {CATAPULT_HI:g})"))
               if not flags[reg]]
    used = [r for f in flags.values() for r in f]
    return Inputs(data, used, steps_used(t, used, "loss"),
                  {f"share_spike_{reg}": len(f) for reg, f in flags.items()},
                  {"k": SPIKE_STEPS, "x": f"{SPIKE_FACTOR:g}"}, {"per_run": details},
                  needs="; ".join(missing))


CAT1 = ClaimSpec(
    "CAT1", "Full-batch GD on the squared error spikes early (the catapult) when 2 < eta x "
    f"lambda_0 < {CATAPULT_HI:g}, and not when eta x lambda_0 < 2",
    f"a spike (max loss of the first {SPIKE_STEPS} steps > {SPIKE_FACTOR:g} x the initial "
    f"loss) in most runs with 2 < eta x lambda_0 < {CATAPULT_HI:g}, in few with eta x "
    "lambda_0 < 2",
    (Statistic(spikes, shares, (
        PartSpec("share_spike_catapult", "share of runs with 2 < eta x lambda_0 < 4 whose "
                 "max loss of the first {k} steps exceeds {x} x the initial loss", SHARE,
                 "above"),
        PartSpec("share_spike_lazy", "share of runs with eta x lambda_0 < 2 whose max loss "
                 "of the first {k} steps exceeds {x} x the initial loss", SHARE, "below"))),),
    studies=STUDY, algorithms=("gd",))


# ---------------------------------------------------------------- CAT2: it ends flatter


def final_sharpness(t: Tables, runs) -> Inputs | str:
    """CAT2's inputs: per catapult run, eta x lambda_max over its last quarter of
    sharpness measurements."""
    cat = [r for r, (_, reg) in regimes(t, runs.index).items() if reg == "catapult"]
    last, details = {}, {}
    for r in cat:
        v = series(t.steps, r, SHARP)[SHARP].to_numpy(float)
        tail = v[-max(MIN_FINAL, math.ceil(FINAL_FRACTION * len(v))):]
        if len(v):
            last[r] = tail
            details[r] = {"start": float(v[0]), "final_median": float(np.median(tail))}
    if not last:
        return (f"sharp_lr_lambda over the run of a GD run with 2 < eta x lambda_0 < "
                f"{CATAPULT_HI:g} (walk.sharpness; `sgdwalk sweep catapult`)")
    conds = seeds_by_condition(runs.loc[list(last)])
    return Inputs((last, conds), list(last), steps_used(t, list(last), SHARP),
                  {"final_lr_lambda": sum(len(v) for v in last.values())}, {},
                  {"per_run": details})


CAT2 = ClaimSpec(
    "CAT2", "After the catapult, training ends where the curvature is stable, lambda < 2/eta",
    f"median of eta x lambda_max over the last quarter of the measurements of runs with "
    f"2 < eta x lambda_0 < {CATAPULT_HI:g} < 2",
    (Statistic(final_sharpness, lambda d, draw: {"final_lr_lambda": pooled_median(*d, draw)}, (
        PartSpec("final_lr_lambda", "median of eta x lambda_max (sharp_lr_lambda) over the "
                 "last quarter of the measurements of catapult runs", 2.0, "below",
                 MIN_FINAL),)),),
    studies=STUDY, algorithms=("gd",))


# ---------------------------------------------------------------- CAT3: far above, divergence


def divergences(t: Tables, runs) -> Inputs | str:
    """CAT3's inputs: the GD runs meant for it with eta x lambda_0 >= DIVERGE_LO, diverged
    ones included (the engine's eligible runs leave them out, so CAT3 reads its own): one
    flag each, 1 when the run ended with the `diverged` status (a failed run: 0)."""
    mine = meant_for(t, "CAT3")
    mine = mine[mine["algorithm"] == "gd"]
    far = {r: c for r, (c, reg) in regimes(t, mine.index).items() if reg == "divergent"}
    if not far:
        return NEEDS + f" with eta x lambda_0 >= {DIVERGE_LO:g}"
    flags = {r: count_blocks([bool(mine.loc[r, "diverged"])]) for r in far}
    details = {r: {"c": c, "status": str(mine.loc[r, "status"])} for r, c in far.items()}
    data = {"share_diverged": (flags, seeds_by_condition(mine.loc[list(far)]))}
    return Inputs(data, list(far), steps_used(t, list(far), "loss"),
                  {"share_diverged": len(far)}, {"lo": f"{DIVERGE_LO:g}"},
                  {"per_run": details})


CAT3 = ClaimSpec(
    "CAT3", "Far above the catapult range (eta x lambda_0 well above 4) GD diverges, and "
    "the run records it",
    f"share of runs with eta x lambda_0 >= {DIVERGE_LO:g} that ended with the diverged "
    f"status > {SHARE:g}",
    (Statistic(divergences, shares, (PartSpec(
        "share_diverged", "share of runs with eta x lambda_0 >= {lo} that ended diverged",
        SHARE, "above"),)),),
    # no algorithm: the engine's eligible runs (which leave diverged runs out, with a note)
    # stay empty, and divergences() reads the study's GD runs itself
    studies=STUDY, algorithms=())
