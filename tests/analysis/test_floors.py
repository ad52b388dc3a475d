"""floors: which steps' floors are measurements, and the heights read from them."""

import numpy as np
import pandas as pd

from sgdwalk.analysis import decide_claims, summarize_runs
from sgdwalk.analysis.floors import censored, measured, uncorrected_eps_note
from sgdwalk.analysis.frames import Tables
from sgdwalk.analysis.synthetic import run_frame


def run(run_id, heights, floor_a, lr, flag=True, **kw):
    cols = {"line_probe_height": np.asarray(heights, float),
            "line_probe_floor_a": np.asarray(floor_a, float)}
    if flag:
        cols["line_probe_censored"] = np.isin(floor_a, (-0.25, 1.25)) * 1.0
    return run_frame(run_id, cols, steps_per_epoch=5, lr=lr, **kw)


def test_heights_above_a_censored_floor_are_left_out():
    t = Tables.from_frames(run("r", [1.0, 9.0, 2.0, 9.0], [0.5, 1.25, 0.6, -0.25], 0.1))
    rows = t.steps["step"] >= 0
    assert list(censored(t, "probe")[rows]) == [0.0, 1.0, 0.0, 1.0]
    assert list(measured(t, "line_probe_height")[rows].dropna()) == [1.0, 2.0]
    assert list(measured(t, "line_probe_floor_a")[rows].dropna()) == [0.5, 0.6]
    assert summarize_runs(t).loc["r", "height_median"] == 1.5
    assert summarize_runs(t).loc["r", "censored_share"] == 0.5


def test_runs_recorded_before_the_flag_are_censored_at_their_grid_ends():
    t = Tables.from_frames(run("r", [1.0, 9.0, 2.0], [0.5, 1.5, 1.25], 0.1, flag=False,
                               config={"walk.line_min": -0.5, "walk.line_max": 1.5}))
    assert list(censored(t, "probe")[t.steps["step"] >= 0]) == [0.0, 1.0, 0.0]


def test_claims_compare_median_heights_of_measured_floors():
    """C3: the censored steps' bounds (9.0) would make the small lr's median the larger."""
    frames = [run(f"lr{lr}-s{s}", h, a, lr, seed=s)
              for lr, h, a in ((0.1, [1.0, 9, 9, 1.2, 9, 0.8], [0.5, 1.25, 1.25, 0.5, 1.25, 0.5]),
                               (0.2, [2.0, 2.2, 1.8, 2.1, 1.9, 2.0], [0.5] * 6))
              for s in (0, 1)]
    (c3,) = decide_claims(pd.concat(frames, ignore_index=True), n_boot=50, only=["C3"])
    assert c3.details["median_height"] == {"sgd lr=0.1 B=32": 1.0, "sgd lr=0.2 B=32": 2.0}


def test_runs_without_line_population_are_named():
    t = Tables.from_frames(pd.concat([
        run("old", [1.0], [0.5], 0.1),
        run("new", [1.0], [0.5], 0.1, header={"line_population": 100})], ignore_index=True))
    (note,) = uncorrected_eps_note(t, ["old", "new"])
    assert "in runs old " in note and "new" not in note.split("(")[0]
    assert uncorrected_eps_note(t, ["new"]) == []
