"""The river-valley claims RV1-RV3 on constructed runs built to give each verdict, the
phases read from the stored lr, and censored economy floors left out (docs/claims.md,
"River-valley claims")."""

from __future__ import annotations

import numpy as np
import pytest

from sgdwalk.analysis import CONTRADICTED, INCONCLUSIVE, MISSING, SUPPORTED, decide_claims
from sgdwalk.analysis.claims_river import phases
from sgdwalk.analysis.frames import Tables
from sgdwalk.analysis.synthetic import run_frame

N, WARMUP, DECAY = 400, 20, 80  # steps, warmup steps, wsd decay steps (the last 20%)
N_BOOT = 200


def lr_of(schedule: str, peak: float) -> np.ndarray:
    t = np.arange(N)
    f = np.minimum((t + 1) / WARMUP, 1.0)
    if schedule == "wsd":
        start = N - DECAY
        f = np.where(t >= start, 1 - (t - start) / DECAY, f)
    return peak * f


def river_run(run_id, schedule="wsd", peak=0.01, height=None, floor=None, noise=0.01,
              seed=0, censored=None):
    """One run: lr of `schedule`, econ_height = height(t) and econ_floor_loss = floor(t)
    plus noise, floors measured at a* = 0.5 except where `censored` (a* = 1.25)."""
    rng = np.random.default_rng(seed)
    t = np.arange(N)
    h = (height or (lambda s: np.full(len(s), 0.2)))(t) + noise * rng.standard_normal(N)
    f = (floor or (lambda s: 2.0 - 1e-3 * s))(t) + noise * rng.standard_normal(N)
    a = np.full(N, 0.5)
    if censored is not None:
        a[censored] = 1.25
    cols = {"lr": lr_of(schedule, peak), "loss": f + h, "econ_height": h,
            "econ_floor_loss": f, "econ_floor_a": a}
    return run_frame(run_id, cols, steps_per_epoch=N, lr=peak,
                     config={"optim.schedule": schedule})


def decide(frames, cid):
    import pandas as pd

    tables = Tables.from_frames(pd.concat(frames, ignore_index=True))
    (claim,) = decide_claims(tables, n_boot=N_BOOT, only=[cid])
    return claim


def test_phases_come_from_the_stored_lr():
    import pandas as pd

    t = Tables.from_frames(pd.concat([river_run("w"), river_run("c", "constant")]))
    assert phases(t, "w") == {"stable": (WARMUP - 1, N - DECAY), "end": N}
    assert phases(t, "c") == {"stable": (WARMUP - 1, N - 1), "end": N}


def stable_scenario(verdict):
    """Two peak lrs x (constant, wsd). supported: stationary heights, higher at the higher
    lr; contradicted: heights collapse to a fifth and are lower at the higher lr;
    inconclusive: stationary, but equal at both lrs (the trend straddles 0)."""
    runs = []
    for i, schedule in enumerate(("constant", "wsd")):
        for j, peak in enumerate((0.003, 0.01)):
            level = {SUPPORTED: 0.1 + 0.1 * j, CONTRADICTED: 0.2 - 0.1 * j,
                     INCONCLUSIVE: 0.15}[verdict]
            if verdict == CONTRADICTED:
                def height(s, level=level):
                    return np.where(s < 200, level, level / 5)
            else:
                def height(s, level=level):
                    return np.full(len(s), level)
            runs.append(river_run(f"{schedule}-{peak}", schedule, peak, height,
                                  noise=0.02, seed=10 * i + j))
    return runs


@pytest.mark.parametrize("verdict", [SUPPORTED, CONTRADICTED, INCONCLUSIVE])
def test_rv1_stable_height_stays_high_and_grows_with_lr(verdict):
    claim = decide(stable_scenario(verdict), "RV1")
    assert claim.verdict == verdict, claim.evidence
    parts = {p.name: p for p in claim.parts}
    if verdict == SUPPORTED:
        assert parts["stays_high"].value == pytest.approx(1.0, abs=0.1)
        assert parts["trend_height_lr"].value == 1.0
    if verdict == CONTRADICTED:
        assert parts["stays_high"].value == pytest.approx(0.2, abs=0.1)
        assert parts["trend_height_lr"].value == -1.0
    if verdict == INCONCLUSIVE:
        assert parts["stays_high"].verdict == SUPPORTED
        assert parts["trend_height_lr"].verdict == INCONCLUSIVE


def decay_scenario(verdict):
    """wsd runs. supported: the height falls from 0.3 to 0.03 over the decay while the
    floor keeps its slow slope (drop in loss mostly height); contradicted: the height stays
    0.3 and the floor falls 0.5; inconclusive: in the last window the height has halved and
    the floor fallen as much, in noise."""
    start = N - DECAY

    def decay(s, before, after):
        return np.where(s < start, before, before + (after - before) * (s - start) / DECAY)

    # the last window (the decay's second half) holds 3/4 of each change on average
    spec = {SUPPORTED: ((0.3, 0.03), 0.0), CONTRADICTED: ((0.3, 0.3), 0.5),
            INCONCLUSIVE: ((0.3, 0.1), 0.2)}[verdict]
    noise = 0.15 if verdict == INCONCLUSIVE else 0.01
    runs = []
    for k, peak in enumerate((0.003, 0.01)):
        runs.append(river_run(
            f"wsd-{peak}", "wsd", peak, lambda s: decay(s, *spec[0]),
            lambda s: 2.0 - 1e-4 * s - np.where(s < start, 0.0, spec[1] * (s - start) / DECAY),
            noise=noise, seed=k))
    runs.append(river_run("constant", "constant", 0.01))  # no decay: not read
    return runs


@pytest.mark.parametrize("verdict", [SUPPORTED, CONTRADICTED, INCONCLUSIVE])
def test_rv2_decay_drops_the_height_and_that_is_most_of_the_loss_drop(verdict):
    claim = decide(decay_scenario(verdict), "RV2")
    assert claim.verdict == verdict, claim.evidence
    assert sorted(claim.runs) == ["wsd-0.003", "wsd-0.01"]
    parts = {p.name: p for p in claim.parts}
    if verdict == SUPPORTED:
        # the last window's mean height is 0.3 - 0.27 * 3/4: a fall of 2/3
        assert parts["height_fall"].value == pytest.approx(2 / 3, abs=0.02)
        assert parts["height_share"].value > 0.9
    if verdict == CONTRADICTED:
        assert abs(parts["height_fall"].value) < 0.1 and abs(parts["height_share"].value) < 0.1


def floor_scenario(verdict, censored=None):
    """supported: the floor falls 1e-3 a step through the stable phase; contradicted: it
    rises in the last quarter; inconclusive: flat in noise."""
    floors = {SUPPORTED: lambda s: 2.0 - 1e-3 * s,
              CONTRADICTED: lambda s: 2.0 - 1e-3 * np.minimum(s, 200) + 2e-3 * np.maximum(
                  s - 200, 0),
              INCONCLUSIVE: lambda s: np.full(len(s), 2.0)}[verdict]
    noise = 0.3 if verdict == INCONCLUSIVE else 0.01
    return [river_run(f"{sch}", sch, 0.01, floor=floors, noise=noise, seed=i,
                      censored=censored) for i, sch in enumerate(("constant", "wsd"))]


@pytest.mark.parametrize("verdict", [SUPPORTED, CONTRADICTED, INCONCLUSIVE])
def test_rv3_floor_keeps_improving_in_the_stable_phase(verdict):
    claim = decide(floor_scenario(verdict), "RV3")
    assert claim.verdict == verdict, claim.evidence


def test_censored_floors_are_left_out():
    """Every third step's floor at the bracket's end, its stored floor a bound 0.5 above:
    counted, the fourth quarter's mean floor would rise; left out, it falls."""
    runs = floor_scenario(SUPPORTED, censored=np.arange(0, N, 3))
    for r in runs:
        cen = r["econ_floor_a"] == 1.25
        r.loc[cen & (r["step"] >= 250), "econ_floor_loss"] += 0.5
    claim = decide(runs, "RV3")
    assert claim.verdict == SUPPORTED
    # the third and fourth quarters of the constant run's stable phase, steps 209-399,
    # less the censored third of them
    q = np.arange(209, 400)
    assert claim.steps["constant"] == {"first": 209, "last": 398,
                                       "n": int((q % 3 != 0).sum())}


def test_without_a_schedule_that_fits_the_claims_say_what_they_need():
    cosine = [river_run("cos", "constant", 0.01)]
    cosine[0]["optim.schedule"] = "cosine"
    for cid in ("RV1", "RV2", "RV3"):
        claim = decide(cosine, cid)
        assert claim.verdict == MISSING
        assert "econ_height" in claim.needs and "river-valley" in claim.needs
