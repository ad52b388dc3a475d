"""Each rule change of docs/claims.md ("Rules that measure what the study says") on runs
built so that the rule before the change gives the wrong verdict and the rule after it
the right one. Every test decides the claim both ways on the same constructed runs."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from sgdwalk.analysis import (
    CLAIMS,
    CONTRADICTED,
    MISSING,
    SUPPORTED,
    decide_claims,
    format_claims,
    write_claims_json,
)
from sgdwalk.analysis.frames import Tables
from sgdwalk.analysis.synthetic import GRID, run_frame, sweep_tables
from sgdwalk.functional.curve import CURVE_KEYS, curve_summary, paired_noise

N_BOOT = 300


def decide(table, cid):
    (claim,) = decide_claims(table, n_boot=N_BOOT, only=[cid])
    return claim


# ---------------------------------------------------------------- rule 1: eps, finite N


def whole_population_lines(rng, steps=40, n=200):
    """Per step, the per-example losses (n, K) on GRID of a probe set that is the whole
    objective (N = n): an exact parabola f(a) = 11 + c (a - 0.5)^2 in the mean, but the
    examples disagree about its depth by a factor 1 +- sqrt(n) (alternating signs, so
    the mean is exact), which makes the sampling eps twice the depth of the dip."""
    spread = np.where(np.arange(n) % 2 == 0, 1.0, -1.0) * math.sqrt(n)
    out = []
    for _ in range(steps):
        bowl = rng.uniform(0.05, 0.1) * (GRID - 0.5) ** 2
        out.append(11.0 + bowl[None, :] * (1.0 + spread[:, None]))
    return out


def line_columns(per_steps, population):
    """line_probe_* columns as the line probe computes them from per-example losses."""
    cols = {f"line_probe_{k}": [] for k in (*CURVE_KEYS, "eps")}
    i0 = int(np.flatnonzero(GRID == 0.0)[0])
    for per in per_steps:
        curve = per.mean(axis=0)
        lo = int(np.argmin(curve))
        eps = 2 * paired_noise(torch.from_numpy(per[:, i0]), torch.from_numpy(per[:, lo]),
                               population)
        s = curve_summary(torch.from_numpy(GRID), torch.from_numpy(curve), eps)
        for k in CURVE_KEYS:
            cols[f"line_probe_{k}"].append(s[k])
        cols["line_probe_eps"].append(eps)
    return {k: np.asarray(v) for k, v in cols.items()}


def test_rule1_an_exact_dip_is_interior_when_the_probe_set_is_the_whole_objective():
    per = whole_population_lines(np.random.default_rng(0))
    old = line_columns(per, None)  # a sample of an infinite population
    new = line_columns(per, 200)  # the probe set is all 200 examples of the objective
    depth = np.minimum(old["line_probe_height"], old["line_probe_height_end"])
    assert (old["line_probe_eps"] > 1.9 * depth).all() and (new["line_probe_eps"] < 1e-12).all()
    header = {"line_population": 200}
    c_old = decide(run_frame("r", old, steps_per_epoch=20), "C1")
    c_new = decide(run_frame("r", new, steps_per_epoch=20, header=header), "C1")
    assert c_old.verdict == CONTRADICTED and c_old.parts[0].value == 0.0
    assert c_new.verdict == SUPPORTED and c_new.parts[0].value == 1.0
    # a run without line_population keeps its eps and says so
    assert any("without the finite-population correction in runs r" in n for n in c_old.notes)
    assert not any("finite-population" in n for n in c_new.notes)


# ---------------------------------------------------------------- rule 6: censored floors


def descending_floors(rng, n=60, eps=0.005, every=3):
    """A run whose measured floor loss falls by 0.01 every step, while every third step's
    floor lies beyond the grid (a* = 1.25): its stored floor loss, f(1.25), is a bound
    0.05 above the sequence. Floor barriers above eps on 30% of (t, k)."""
    t = np.arange(n)
    cens = (t % every == every - 1).astype(float)
    cols = {"line_probe_floor_loss": 1.0 - 0.01 * t + 0.05 * cens,
            "line_probe_floor_a": np.where(cens == 1, 1.25, 0.5),
            "line_probe_censored": cens, "line_probe_eps": np.full(n, eps)}
    for k in (1, 2):
        b = np.where(rng.random(n) < 0.3, 2 * eps, 0.1 * eps)
        b[:k] = np.nan
        cols[f"barrier_floor_k{k}"] = b
    return cols


def test_rule6_a_floor_beyond_the_grid_is_a_bound_not_a_rise_of_the_floor():
    cols = descending_floors(np.random.default_rng(0))
    old = {k: v for k, v in cols.items() if k not in ("line_probe_censored",
                                                      "line_probe_floor_a")}
    c_old = decide(run_frame("r", old, steps_per_epoch=20), "C6")
    c_new = decide(run_frame("r", cols, steps_per_epoch=20), "C6")
    rises_old, rises_new = (next(p for p in c.parts if p.name == "share_floor_rises")
                            for c in (c_old, c_new))
    # the old rule counts each jump onto a bound as a rise: a third of the steps
    assert c_old.verdict == SUPPORTED and rises_old.value > 0.3
    # between measured floors the sequence only falls
    assert c_new.verdict == CONTRADICTED and rises_new.value == 0.0 and rises_new.n >= 10
    # a run recorded before the flag: a floor at walk.line_max is censored all the same
    legacy = {k: v for k, v in cols.items() if k != "line_probe_censored"}
    c_legacy = decide(run_frame("r", legacy, steps_per_epoch=20,
                                config={"walk.line_max": 1.25}), "C6")
    assert c_legacy.verdict == CONTRADICTED and c_legacy.parts[1].value == 0.0


# ---------------------------------------------------------------- rule 2: floors in (0, 1]


def descending_steps(rng, n=60, eps=0.1):
    """80% of the steps descend past a = 1 (floor at a* = 1.15, beyond the step: the
    height f(0) - F = 1.0 is the descent still ahead, > eps); the other 20% reach a floor
    inside the step (a* = 0.6) but stay within the noise of it (height 0.05 < eps).
    Consecutive updates point against each other (cos_update about -0.5)."""
    inside = rng.permutation(np.arange(n) % 5 == 0)
    return {"line_probe_floor_a": np.where(inside, 0.6, 1.15),
            "line_probe_height": np.where(inside, 0.05, 1.0),
            "line_probe_censored": np.zeros(n), "line_probe_eps": np.full(n, eps),
            "cos_update": -0.5 + 0.1 * rng.standard_normal(n)}


def tables(cols, **kw):
    """One run "r" of 1,000 parameters (meta.json's `parameters`)."""
    return Tables.from_frames(run_frame("r", cols, steps_per_epoch=20, **kw),
                              metas={"r": {"parameters": 1000}})


def test_rule2_a_height_counts_over_a_floor_inside_the_step():
    cols = descending_steps(np.random.default_rng(0))
    # the old rule counted every step, wherever its floor: as if all were inside
    blind = {**cols, "line_probe_floor_a": np.full(60, 0.6)}
    c_old, c_new = decide(tables(blind), "C2"), decide(tables(cols), "C2")
    h_old, h_new = (c.parts[0] for c in (c_old, c_new))
    assert h_old.name == h_new.name == "share_height_above_noise"
    assert c_old.verdict == SUPPORTED and h_old.value == 0.8 and h_old.n == 60
    assert c_new.verdict == CONTRADICTED and h_new.value == 0.0 and h_new.n == 12
    assert c_new.details["floor_position"] == {"uphill": 0.0, "overshoot": 0.2,
                                               "undershoot": 0.8, "steps": 60}


# ---------------------------------------------------------------- rule 3: most of training


def late_valley(rng, windows=8, per_window=20, first=2, p=0.9):
    """Interior convex floors on 90% of the steps of every analysed window but the first
    `first` (none there: the early phase before the valley forms)."""
    f = np.concatenate([np.zeros(first * per_window),
                        (rng.random((windows - first) * per_window) < p) * 1.0])
    n = len(f)
    return {"line_probe_interior": f, "line_probe_convex": np.ones(n)}


def test_rule3_most_of_training_is_the_median_window_not_the_worst():
    cols = late_valley(np.random.default_rng(0))
    claim = decide(run_frame("r", cols, steps_per_epoch=20), "C1")
    shares = claim.details["share_by_epoch"]
    assert len(shares) == 8 and shares["1"] == shares["2"] == 0.0
    # the old rule: the lowest window decides, 0 < 0.5
    assert min(shares.values()) == 0.0
    (part,) = claim.parts
    assert part.name == "median_window_share" and claim.verdict == SUPPORTED
    assert part.value == float(np.median(list(shares.values()))) and part.lo > 0.5


# ---------------------------------------------------------------- rule 4: cosine magnitude


def test_rule4_a_cosine_within_the_noise_of_random_directions_is_no_bounce():
    """cos_update of about -0.006 on 17,610 parameters: negative on most steps, but 0.8
    standard deviations of two independent random directions (1/sqrt(P) = 0.0075)."""
    rng, n, P = np.random.default_rng(0), 200, 17_610
    cols = {"line_probe_floor_a": np.full(n, 0.5), "line_probe_height": np.ones(n),
            "line_probe_censored": np.zeros(n), "line_probe_eps": np.full(n, 0.1),
            "cos_update": -0.006 + rng.standard_normal(n) / math.sqrt(P)}
    claim = decide(Tables.from_frames(run_frame("r", cols, steps_per_epoch=20),
                                      metas={"r": {"parameters": P}}), "C2")
    parts = {p.name: p for p in claim.parts}
    # the old rule: the two shares, both above 0.5, C2 supported
    assert parts["share_height_above_noise"].verdict == SUPPORTED
    assert parts["share_negative_cosine"].verdict == SUPPORTED
    assert parts["share_negative_cosine"].value > 0.7
    # the new part: the median cosine is -0.8 sigma, inside the 3-sigma band
    z = parts["median_cosine_z"]
    assert z.threshold == -3.0 and -1.2 < z.value < -0.4 and z.verdict == CONTRADICTED
    assert claim.verdict == CONTRADICTED
    assert claim.details["median_cosine"] == pytest.approx(z.value / math.sqrt(P), rel=1e-12)
    assert claim.details["parameters"] == {"r": P}


def test_rule4_without_a_parameter_count_the_cosine_part_is_still_needed():
    rng, n = np.random.default_rng(1), 60
    cols = {"line_probe_floor_a": np.full(n, 0.5), "line_probe_height": np.ones(n),
            "line_probe_eps": np.full(n, 0.1), "cos_update": -0.5 + 0.1 * rng.random(n)}
    claim = decide(run_frame("r", cols, steps_per_epoch=20), "C2")
    assert [p.name for p in claim.parts] == ["share_height_above_noise",
                                             "share_negative_cosine"]
    assert "parameter count P of runs r" in claim.needs and claim.verdict != SUPPORTED


# ---------------------------------------------------------------- rule 5: runs meant for it


def alignment_like_runs(rng, study="flatness"):
    """SGD runs over two batch sizes with align_topk and dist_init, from a study that is
    meant for C8 only: they happen to record what C11 reads."""
    frames = []
    for b in (32, 128):
        for s in (0, 1):
            n, spe = 3 * (512 // b), 512 // b
            cols = {"align_topk": 0.5 + 0.05 * rng.standard_normal(n),
                    "dist_init": np.sqrt(np.arange(n) + 1.0) / math.sqrt(b)}
            f = run_frame(f"b{b}-s{s}", cols, steps_per_epoch=spe, batch_size=b, seed=s)
            f["study"] = study
            frames.append(f)
    return pd.concat(frames, ignore_index=True)


def test_rule5_a_claim_no_study_lists_is_missing_and_names_its_study():
    steps = alignment_like_runs(np.random.default_rng(0))
    old = decide(Tables.from_frames(steps), "C11")  # no manifest: every run is read, as before
    new = decide(Tables.from_frames(steps, study_claims={"flatness": ("C8",)}), "C11")
    assert old.verdict != MISSING and len(old.runs) == 4  # decided from flatness runs
    assert new.verdict == MISSING and not new.parts and not new.runs
    assert new.needs == ("runs of a study meant for C11 (`sgdwalk sweep alignment`); no study "
                         "here lists it (flatness: C8)")


def test_each_claim_names_the_shipped_studies_that_list_it():
    from sgdwalk.studies import load_study, study_names

    listed = {}
    for name in study_names():
        for cid in load_study(name).claims:
            listed.setdefault(cid, set()).add(name)
    assert {cid: set(spec.studies) for cid, spec in CLAIMS.items()} == listed


def test_rule5_a_study_that_lists_no_claim_decides_what_its_runs_hold():
    steps = alignment_like_runs(np.random.default_rng(0), study="mine")
    claim = decide(Tables.from_frames(steps, study_claims={"mine": ()}), "C11")
    assert claim.verdict != MISSING and len(claim.runs) == 4


# ---------------------------------------------------------------- rule 8: the output says why


def test_rule8_each_claim_states_its_rule_and_one_sentence_of_evidence(tmp_path):
    cols = late_valley(np.random.default_rng(0), first=4, p=0.6)  # 4 of 8 windows: none
    claims = decide_claims(run_frame("r", cols, steps_per_epoch=20), n_boot=N_BOOT,
                           only=["C1", "C3"])
    c1, c3 = claims
    p = c1.parts[0]
    assert c1.verdict == CONTRADICTED and p.hi < 0.5
    assert c1.evidence == (
        f"C1 contradicted: median over 8 analysed windows of the share of steps with an "
        f"interior convex floor (line_probe) = {p.value:.3g} [{p.lo:.3g}, {p.hi:.3g}] "
        f"(n 160), below 0.5")
    assert c1.rule.startswith("its one part's verdict")
    assert c3.verdict == MISSING and c3.evidence == f"C3 missing: needs {c3.needs}"
    text = format_claims(claims)
    assert f"      why:  {c1.evidence}" in text.splitlines()
    assert f"      rule: {c1.rule}" in text.splitlines()
    data = json.loads(write_claims_json(claims, tmp_path / "claims.json").read_text())
    assert [(c["evidence"], c["rule"]) for c in data["claims"]] == [
        (c.evidence, c.rule) for c in claims]


def test_rule8_the_rule_of_several_parts_and_their_count():
    claims = decide_claims(sweep_tables(epochs=2), n_boot=50, only=["C9"])
    (c9,) = claims
    assert c9.rule.startswith("any of 4 parts supported: supported")
    assert c9.evidence.startswith("C9 supported: |relative difference| of dist_init")
    assert c9.evidence.endswith("above 0.1; 3 of 4 parts supported")
