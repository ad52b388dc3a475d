"""Claims EOS1-EOS4 (edge of stability) on constructed full-batch GD runs built to give each
verdict; the rules are in docs/claims.md ("Edge of stability")."""

import numpy as np
import pandas as pd
import pytest

from sgdwalk.analysis import CONTRADICTED, INCONCLUSIVE, MISSING, SUPPORTED, decide_claims
from sgdwalk.analysis.synthetic import run_frame

N_BOOT = 200


def decide(table, cid):
    (claim,) = decide_claims(table, n_boot=N_BOOT, only=[cid])
    return claim


def gd_run(run_id, lr, ratio, loss, floor_a=None, lr_kappa=None, every=10, loss_name="mse",
           seed=0):
    """A GD run of len(loss) steps: `loss` every step, lambda_max x eta / 2 = ratio(step)
    measured every `every` steps (sharp_lr_lambda = 2 x ratio), optionally the line floor
    a* and lr x kappa every step."""
    n = len(loss)
    steps = np.arange(n)
    sharp = np.where(steps % every == 0, 2 * ratio(steps), np.nan)
    cols = {"loss": loss, "sharp_lr_lambda": sharp, "sharp_lambda_max": sharp / lr}
    if floor_a is not None:
        cols.update({"line_probe_floor_a": floor_a, "line_probe_censored": np.zeros(n),
                     "curv_lr_kappa": lr_kappa})
    return run_frame(run_id, cols, steps_per_epoch=1, lr=lr, algorithm="gd",
                     batch_size=1257, seed=seed, config={"train.loss": loss_name})


def sharpening(r0, onset, level, wiggle=0.05):
    """ratio(step): linear from r0 to 1 at `onset`, then `level` +- wiggle (alternating)."""
    def ratio(steps):
        up = r0 + (1 - r0) * steps / onset
        after = level + wiggle * np.where((steps // 10) % 2 == 0, 1, -1)
        return np.where(steps < onset, up, after)
    return ratio


def falling_loss(n, onset, up_every=3, rng=None):
    """A loss falling as 1 / (1 + t / 50) with, after the onset, a rise at every
    `up_every`-th step (0: monotone)."""
    t = np.arange(n)
    base = 1 / (1 + t / 50)
    if up_every:
        bump = np.where((t >= onset) & (t % up_every == 0), 0.02 * base, 0.0)
        base = base + bump
    return base


def eos_table(level=1.0, r0=0.5, n=400, onset=150, up_every=3, lrs=(0.4, 0.5, 0.6),
              mismatch=1.0, loss_name="mse"):
    frames = []
    rng = np.random.default_rng(0)
    for i, lr in enumerate(lrs):
        lr_kappa = rng.uniform(1.5, 2.1, n)
        floor_a = mismatch / lr_kappa * (1 + rng.normal(0, 0.01, n))
        frames.append(gd_run(f"eos{i}", lr, sharpening(r0, onset, level),
                             falling_loss(n, 0, up_every), floor_a, lr_kappa,
                             loss_name=loss_name))
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------- EOS1


def test_eos1_supported_when_sharpness_rises_to_two_over_eta():
    c = decide(eos_table(), "EOS1")
    assert c.verdict == SUPPORTED
    parts = {p.name: p for p in c.parts}
    assert parts["share_reaching"].value == 1.0 and parts["rise_concordance"].value == 1.0
    # lambda x eta / 2 = 0.5 + 0.5 t / 150 first reaches 0.9 at t = 120, a measured step
    assert c.details["onset_step"] == {"eos0": 120, "eos1": 120, "eos2": 120}


def test_eos1_contradicted_when_sharpness_falls_and_never_reaches():
    def ratio(steps):
        return 0.5 - 0.3 * steps / 400
    table = pd.concat([gd_run(f"r{i}", lr, ratio, falling_loss(400, 400, 0))
                       for i, lr in enumerate((0.4, 0.5))], ignore_index=True)
    c = decide(table, "EOS1")
    assert c.verdict == CONTRADICTED
    assert {p.name: p.value for p in c.parts} == {"share_reaching": 0.0, "rise_concordance": -1.0}


def test_eos1_inconclusive_when_half_the_runs_reach():
    never = gd_run("never", 0.3, lambda s: 0.3 + 0 * s, falling_loss(400, 400, 0))
    c = decide(pd.concat([eos_table(lrs=(0.4,)), never], ignore_index=True), "EOS1")
    assert c.verdict == INCONCLUSIVE and c.headline.name == "share_reaching"
    assert c.headline.value == 0.5


def test_eos1_leaves_out_runs_that_start_at_the_edge_and_ignores_cross_entropy():
    edge = gd_run("edge", 0.8, lambda s: 0.95 + 0 * s, falling_loss(400, 0))
    ce = gd_run("ce", 0.4, lambda s: 0.3 - 0 * s, falling_loss(400, 400, 0),
                loss_name="cross_entropy")
    c = decide(pd.concat([eos_table(lrs=(0.4,)), edge, ce], ignore_index=True), "EOS1")
    assert c.verdict == SUPPORTED and c.runs == ["eos0"]
    assert any("start at the edge" in n and "edge" in n for n in c.notes)


def test_eos_claims_are_missing_without_mse_gd_sharpness():
    ce = eos_table(loss_name="cross_entropy")
    for cid in ("EOS1", "EOS2", "EOS3", "EOS4"):
        c = decide(ce, cid)
        assert c.verdict == MISSING and "mse" in c.needs


# ---------------------------------------------------------------- EOS2


def test_eos2_supported_when_the_ratio_stays_in_the_band():
    c = decide(eos_table(level=1.0), "EOS2")
    assert c.verdict == SUPPORTED and c.parts[0].value == 1.0
    assert c.parts[0].n == 3 * 27  # 27 measurements after the onset at step 120, per run


def test_eos2_contradicted_when_sharpness_overshoots_the_band():
    c = decide(eos_table(level=1.3), "EOS2")
    # in the band: only steps 130 and 140, still on the ramp to the onset level
    assert c.verdict == CONTRADICTED and c.parts[0].value == pytest.approx(2 / 27)


def test_eos2_inconclusive_with_too_few_measurements_after_the_onset():
    c = decide(eos_table(onset=395, lrs=(0.4,)), "EOS2")  # onset at step 320
    assert c.verdict == INCONCLUSIVE and c.parts[0].n == 7


def test_eos2_reports_cross_entropy_runs_leaving_the_edge_in_a_note():
    def leaves(steps):
        return np.where(steps < 150, 0.5 + steps / 300, np.maximum(0.1, 1 - (steps - 150) / 200))
    ce = gd_run("ce", 0.4, leaves, falling_loss(400, 150), loss_name="cross_entropy")
    c = decide(pd.concat([eos_table(), ce], ignore_index=True), "EOS2")
    assert c.verdict == SUPPORTED and "ce" not in c.runs
    (note,) = [n for n in c.notes if "cross-entropy run ce" in n]
    assert "0.90 at step 120" in note and "median 0.10" in note


# ---------------------------------------------------------------- EOS3


def test_eos3_supported_when_the_loss_falls_with_rises():
    c = decide(eos_table(up_every=3), "EOS3")
    assert c.verdict == SUPPORTED
    parts = {p.name: p.value for p in c.parts}
    assert parts["share_loss_increase"] == pytest.approx(1 / 3, abs=0.01)
    assert parts["relative_fall"] > 0.3


def test_eos3_contradicted_when_the_loss_falls_monotonically():
    c = decide(eos_table(up_every=0), "EOS3")
    assert c.verdict == CONTRADICTED and c.headline.name == "share_loss_increase"
    assert c.headline.value == 0.0


def test_eos3_contradicted_when_the_loss_ends_above_the_onset():
    table = eos_table()
    rising = table["step"] >= 150
    table.loc[rising, "loss"] = 1 + 0.001 * table.loc[rising, "step"] \
        + 0.01 * (table.loc[rising, "step"] % 2)
    c = decide(table, "EOS3")
    assert c.verdict == CONTRADICTED and c.headline.name == "relative_fall"


def test_eos3_inconclusive_with_few_steps_after_the_onset():
    c = decide(eos_table(n=130, lrs=(0.4,)), "EOS3")  # onset at step 120: 9 changes
    assert c.verdict == INCONCLUSIVE and c.headline.n == 9


# ---------------------------------------------------------------- EOS4


def test_eos4_supported_when_the_floor_is_one_over_lr_kappa():
    c = decide(eos_table(mismatch=1.0), "EOS4")
    assert c.verdict == SUPPORTED and c.parts[0].value < 0.02
    assert c.details["share_within"] == 1.0


def test_eos4_contradicted_when_the_floor_is_elsewhere():
    c = decide(eos_table(mismatch=0.7), "EOS4")
    assert c.verdict == CONTRADICTED and c.parts[0].value == pytest.approx(0.3, abs=0.02)


def test_eos4_inconclusive_and_ignoring_censored_and_exterior_floors():
    table = eos_table(mismatch=0.7)
    keep = table["step"] < 5  # five interior floors per run, the others censored or exterior
    table.loc[~keep & (table["step"] % 2 == 0), "line_probe_censored"] = 1.0
    table.loc[~keep & (table["step"] % 2 == 1), "line_probe_floor_a"] = 1.1
    c = decide(table, "EOS4")
    assert c.parts[0].n == 15 and c.verdict == CONTRADICTED  # 15 >= 10: still decided
    table.loc[table["run_id"] != "eos0", "line_probe_floor_a"] = 1.1
    c = decide(table, "EOS4")
    assert c.parts[0].n == 5 and c.verdict == INCONCLUSIVE
