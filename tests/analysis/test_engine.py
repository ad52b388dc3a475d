"""The claim engine: a claim written as one spec in a test file is decided like C1-C12;
missing inputs, absent parts and blocked statistics follow the spec; statistics are
bootstrapped in order from one generator; the one share statistic."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from sgdwalk.analysis import CONTRADICTED, INCONCLUSIVE, MISSING, SUPPORTED
from sgdwalk.analysis.bootstrap import Draw
from sgdwalk.analysis.claims_line import C1, C12
from sgdwalk.analysis.engine import ClaimSpec, Inputs, PartSpec, Statistic, decide
from sgdwalk.analysis.frames import Tables, series
from sgdwalk.analysis.scope import seeds_by_condition, steps_used
from sgdwalk.analysis.shares import count_blocks, flag_share, share, shares
from sgdwalk.analysis.synthetic import run_frame
from sgdwalk.errors import ConfigError

N_BOOT = 200


def positive_steps(t, runs):
    """Inputs of a new claim: per run, the steps with x > 0."""
    ids = [r for r in runs.index if len(series(t.steps, r, "x"))]
    if not ids:
        return "x from a probe that logs it"
    flags = {r: count_blocks(series(t.steps, r, "x")["x"].to_numpy() > 0) for r in ids}
    return Inputs({"share_positive": (flags, seeds_by_condition(runs.loc[ids]))}, ids,
                  steps_used(t, ids, "x"), {"share_positive": sum(f.n for f in flags.values())},
                  {"col": "x"}, {"runs_with_x": len(ids)})


C0 = ClaimSpec("C0", "x is mostly positive", "share of steps with x > 0 above 0.5",
               (Statistic(positive_steps, shares, (PartSpec(
                   "share_positive", "share of steps with {col} > 0", 0.5, "above", 10),)),))


def table(*runs):
    """runs: (run id, x values, status); every run an SGD seed of one condition."""
    return Tables.from_frames(pd.concat(
        [run_frame(r, {"x": x}, steps_per_epoch=10, seed=i, status=status)
         for i, (r, x, status) in enumerate(runs)], ignore_index=True))


def test_a_claim_written_as_one_spec_is_decided_like_the_others():
    rng = np.random.default_rng(0)
    t = table(("a", rng.normal(1, 1, 60), "completed"), ("b", rng.normal(1, 1, 40), "completed"),
              ("c", -np.ones(30), "diverged"))
    claim = decide(C0, t, np.random.default_rng(1), N_BOOT)
    (part,) = claim.parts
    assert claim.verdict == SUPPORTED and part.verdict == SUPPORTED
    assert part.statistic == "share of steps with x > 0" and part.n == 100
    x = t.steps.loc[t.steps["run_id"].isin(["a", "b"]) & (t.steps["step"] >= 0), "x"]
    assert part.value == (x > 0).mean()  # the share pooled over both seeds, as measured
    assert part.lo <= part.value <= part.hi and part.hi - part.lo < 0.3
    assert claim.runs == ["a", "b"] and claim.steps["a"] == {"first": 0, "last": 59, "n": 60}
    assert claim.notes == ["left out diverged runs: c"]  # the engine's eligibility
    assert claim.details == {"runs_with_x": 2, "n_boot": N_BOOT}
    assert decide(C0, table(("a", -np.ones(60), "completed")), np.random.default_rng(1),
                  N_BOOT).verdict == CONTRADICTED


def test_missing_inputs_make_the_claim_missing_with_what_it_needs():
    t = Tables.from_frames(run_frame("a", {"loss": np.ones(20)}, steps_per_epoch=10))
    got = decide(dataclasses.replace(C0, needs_suffix=" on SGD runs"), t,
                 np.random.default_rng(0), N_BOOT)
    assert got.verdict == MISSING and not got.parts
    assert got.needs == "x from a probe that logs it on SGD runs"
    only_gd = dataclasses.replace(C0, algorithms=("gd",), needs_runs="a GD run")
    assert decide(only_gd, t, np.random.default_rng(0), N_BOOT).needs == "a GD run"


def test_a_part_the_statistic_does_not_return_is_left_out_and_its_needs_kept():
    def without_share(t, runs):
        got = positive_steps(t, runs)
        return dataclasses.replace(got, data={}, needs="y as well")

    spec = dataclasses.replace(C0, statistics=(dataclasses.replace(
        C0.statistics[0], inputs=without_share),))
    got = decide(spec, table(("a", np.ones(60), "completed")), np.random.default_rng(0), 50)
    assert got.parts == [] and got.needs == "y as well" and got.verdict == MISSING


def test_a_blocked_statistic_makes_its_parts_inconclusive_with_the_reason():
    def blocked(t, runs):
        return dataclasses.replace(positive_steps(t, runs), blocked="one seed")

    spec = dataclasses.replace(C0, statistics=(dataclasses.replace(
        C0.statistics[0], inputs=blocked),))
    got = decide(spec, table(("a", np.ones(60), "completed")), np.random.default_rng(0), 50)
    assert got.verdict == INCONCLUSIVE and got.parts[0].why() == "one seed"


def test_statistics_are_bootstrapped_in_order_from_one_generator():
    """C12 is C1's statistic then C2's: its first part equals C1's on the same GD runs
    with the same generator, to the last bit."""
    rng = np.random.default_rng(3)
    n = 40
    cols = {"line_probe_interior": (rng.random(n) < 0.9) * 1.0, "line_probe_convex": np.ones(n),
            "line_probe_height": np.ones(n), "line_probe_eps": np.full(n, 0.1),
            "line_probe_floor_a": np.full(n, 0.5),
            "cos_update": rng.normal(-0.5, 0.3, n)}
    t = Tables.from_frames(run_frame("gd", cols, steps_per_epoch=1, algorithm="gd"),
                           metas={"gd": {"parameters": 1000}})
    c12 = decide(C12, t, np.random.default_rng(9), N_BOOT)
    c1 = decide(dataclasses.replace(C1, algorithms=("gd",)), t, np.random.default_rng(9), N_BOOT)
    assert [p.name for p in c12.parts] == ["median_window_share", "share_height_above_noise",
                                           "share_negative_cosine", "median_cosine_z"]
    assert dataclasses.asdict(c12.parts[0]) == dataclasses.asdict(c1.parts[0])


def test_the_share_pools_cells_over_runs_and_resamples_whole_rows():
    a = np.array([[1, 0], [1, np.nan], [0, 0]])  # 2 of 5 measured cells
    b = np.array([1.0, 1.0, 1.0, 0.0])  # 3 of 4
    blocks = {"a": count_blocks(a), "b": count_blocks(b)}
    assert share(blocks) == 5 / 9 and flag_share(a) == 2 / 5 and np.isnan(flag_share([]))
    assert share(blocks, {0: ["b"]}) == 3 / 4
    # b's rows resampled in 2 circular blocks of 2 rows (sums 2, 2, 1, 1): never 0 or 1/4
    d = Draw(np.random.default_rng(0))
    assert {share({"b": blocks["b"]}, None, d) for _ in range(100)} == {0.5, 0.75, 1.0}


def test_a_misspelt_direction_or_combine_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"^part p: direction: expected one of above, "
                       r"below, got 'abvoe'$"):
        PartSpec("p", "p", 0.5, "abvoe")
    with pytest.raises(ConfigError, match=r"^claim C0: combine: expected one of all, any, "
                       r"got 'most'$"):
        dataclasses.replace(C0, combine="most")
