"""The river-valley claims' censoring under walk.economy_reach = "peak": a floor is a bound
at an end of the bracket scaled by the step's econ_reach (docs/claims.md, "River-valley
claims"), and a run without econ_reach keeps the unscaled bracket."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sgdwalk.analysis.claims_river import measured_econ
from sgdwalk.analysis.frames import Tables
from sgdwalk.analysis.synthetic import run_frame

N = 8
LO, HI = -0.25, 4.0  # walk.line_min, walk.line_max


def _run(run_id, floor_a, reach=None):
    cols = {"lr": np.full(N, 1e-3), "econ_height": np.full(N, 0.1),
            "econ_floor_loss": np.full(N, 2.0), "econ_floor_a": np.asarray(floor_a, float)}
    if reach is not None:
        cols["econ_reach"] = np.asarray(reach, float)
    return run_frame(run_id, cols, steps_per_epoch=N, lr=1e-3,
                     config={"walk.line_min": LO, "walk.line_max": HI})


def test_the_bracket_scales_with_each_steps_reach():
    reach = np.array([1.0, 1.0, 3.0, 3.0, 3.0, 2.5, 2.5, 7.0])
    floor_a = np.array([HI, 3.0, HI * 3.0, 11.0, LO * 3.0, 5.0, 9.0, HI * 7.0])
    # ends:             bound  in   bound     in     bound    in   in    bound
    peak = _run("peak", floor_a, reach)
    step = _run("step", np.array([HI, 3.0, 0.5, 9.0, LO, 1.0, 2.0, 3.9]))
    t = Tables.from_frames(pd.concat([peak, step], ignore_index=True))
    assert measured_econ(t, "peak")["step"].tolist() == [1, 3, 5, 6]
    # a run measured with "step" beside it (econ_reach NaN): the unscaled bracket
    assert measured_econ(t, "step")["step"].tolist() == [1, 2, 5, 6, 7]
