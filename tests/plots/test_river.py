"""The river-valley figure: a column per schedule, each run's measured loss = floor + height
drawn, censored steps left out; skipped with a reason without the economy columns."""

import numpy as np
import pandas as pd

from sgdwalk.analysis.frames import Tables
from sgdwalk.analysis.synthetic import run_frame
from sgdwalk.plots.base import Figure, Skipped
from sgdwalk.plots.river import SMOOTH, river_valley

N = 120


def run(run_id, schedule, peak):
    t = np.arange(N)
    lr = peak * (np.where(t < 90, 1.0, 1 - (t - 90) / 30) if schedule == "wsd" else 1.0)
    a = np.where(t % 4 == 0, 1.25, 0.5)  # every fourth floor censored
    cols = {"lr": lr * np.ones(N), "econ_height": 0.1 + 0 * t, "econ_floor_loss": 2 - t / N,
            "econ_floor_a": a}
    return run_frame(run_id, cols, steps_per_epoch=N, lr=peak,
                     config={"optim.schedule": schedule})


def test_one_column_per_schedule_with_loss_floor_and_height():
    t = Tables.from_frames(pd.concat([run(f"{s}-{p}", s, p) for s in ("wsd", "constant")
                                      for p in (0.01, 0.003)], ignore_index=True))
    fig = river_valley(t)
    assert isinstance(fig, Figure) and fig.png()[:4] == b"\x89PNG"
    axes = np.asarray(fig.fig.axes).reshape(3, 2)
    assert [ax.get_title() for ax in axes[0]] == ["constant", "wsd"]
    loss_line, floor_line = axes[1, 1].lines[:2]
    steps = loss_line.get_xdata()
    assert len(steps) == N - N // 4 and not (np.asarray(steps) % 4 == 0).any()
    # the rolling mean of floor + height, the floor falling 1/N a step under a 0.1 height
    k = SMOOTH + 10
    want = np.mean([2 - s / N + 0.1 for s in steps[k - SMOOTH + 1 : k + 1]])
    assert abs(loss_line.get_ydata()[k] - want) < 1e-12
    assert abs(loss_line.get_ydata()[k] - floor_line.get_ydata()[k] - 0.1) < 1e-12
    assert len(axes[0, 0].lines) == 2 and axes[0, 0].get_legend() is not None


def test_a_long_stretch_of_censored_floors_breaks_the_line():
    r = run("wsd-0.01", "wsd", 0.01)
    r.loc[r["step"].between(40, 99), "econ_floor_a"] = 1.25  # 60 steps beyond the bracket
    fig = river_valley(Tables.from_frames(r))
    loss_line = fig.fig.axes[1].lines[0]
    x, y = np.asarray(loss_line.get_xdata()), np.asarray(loss_line.get_ydata())
    assert not ((x >= 40) & (x <= 99)).any()
    assert np.isnan(y[x == 101]).all() and np.isfinite(y[x != 101]).all()


def test_without_the_economy_it_says_what_it_needs():
    frame = run_frame("r", {"loss": np.ones(10)}, steps_per_epoch=10)
    got = river_valley(Tables.from_frames(frame))
    assert isinstance(got, Skipped) and "econ_height" in got.reason
