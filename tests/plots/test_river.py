"""The river-valley figure: a column per schedule, each run's measured loss = floor + height
drawn, censored steps left out; skipped with a reason without the economy columns."""

import re

import numpy as np
import pandas as pd
import pytest

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


def with_sharpness(frame, every=10, precond=True):
    """The run with sharp_lambda_max (and psharp_lambda_max, psharp_edge) every `every`
    steps: lambda = 50 + step, lambda(P^-1 H) = 1000 + step at edge ratio 0.25."""
    at = (frame["step"] >= 0) & (frame["step"] % every == 0)
    s = frame["step"].astype(float)
    frame = frame.assign(sharp_lambda_max=np.where(at, 50 + s, np.nan))
    if precond:
        frame = frame.assign(psharp_lambda_max=np.where(at, 1000 + s, np.nan),
                             psharp_edge=np.where(at, 0.25, np.nan))
    return frame


def test_sharpness_rows_with_their_thresholds_and_no_empty_panels():
    """wsd runs stored both sharpnesses, constant runs neither: two more rows, their
    constant panels not drawn, the wsd panels holding the stored values and the thresholds
    2/lr and lambda / psharp_edge at the same steps."""
    runs = [with_sharpness(run(f"wsd-{p}", "wsd", p)) for p in (0.01, 0.003)]
    runs += [run(f"constant-{p}", "constant", p) for p in (0.01, 0.003)]
    fig = river_valley(Tables.from_frames(pd.concat(runs, ignore_index=True)))
    axes = np.asarray(fig.fig.axes).reshape(5, 2)
    assert [ax.get_title() for ax in axes[0]] == ["constant", "wsd"]
    assert not axes[3, 0].get_visible() and not axes[4, 0].get_visible()
    assert all(ax.get_visible() for ax in axes[:3].ravel())
    sharp, psharp = axes[3, 1], axes[4, 1]
    assert sharp.get_visible() and sharp.get_yscale() == "log"
    assert len(sharp.lines) == 4 and len(psharp.lines) == 4  # value and threshold, two runs
    peaks = []
    for lam, two_over_lr in (sharp.lines[:2], sharp.lines[2:]):  # one pair per run
        steps = np.asarray(lam.get_xdata())
        assert list(steps) == list(range(0, N, 10))
        assert np.allclose(lam.get_ydata(), 50 + steps)
        peak = 2 / two_over_lr.get_ydata()[0]
        lr = peak * np.where(steps < 90, 1.0, 1 - (steps - 90) / 30)
        assert np.allclose(two_over_lr.get_ydata(), 2 / lr)
        peaks.append(peak)
    assert sorted(peaks) == pytest.approx([0.003, 0.01])
    for plam, edge in (psharp.lines[:2], psharp.lines[2:]):
        steps = np.asarray(plam.get_xdata())
        assert np.allclose(plam.get_ydata(), 1000 + steps)
        assert np.allclose(edge.get_ydata(), (1000 + steps) / 0.25)
    assert axes[3, 1].get_ylabel().startswith("sharpness")  # the first drawn panel's label
    assert "P^-1 H" in fig.caption


def test_a_row_only_for_what_some_run_stored():
    runs = [with_sharpness(run("wsd-0.01", "wsd", 0.01), precond=False),
            run("constant-0.01", "constant", 0.01)]
    fig = river_valley(Tables.from_frames(pd.concat(runs, ignore_index=True)))
    axes = np.asarray(fig.fig.axes).reshape(4, 2)  # no preconditioned-sharpness row
    assert not axes[3, 0].get_visible() and axes[3, 1].get_visible()
    assert axes[2, 0].xaxis.get_label_text() == "step"  # the lowest drawn panel is labelled
    plain = river_valley(Tables.from_frames(run("wsd-0.01", "wsd", 0.01)))
    assert len(plain.fig.axes) == 3 and "P^-1 H" not in plain.caption


def study_tables(study):
    runs = [with_sharpness(run(f"{s}-{p}", s, p)) for s in ("constant", "cosine", "wsd")
            for p in (0.01, 0.003)]
    for i, r in enumerate(runs):  # heights apart: plots.sweep's error bars of equal values
        r["econ_height"] += 0.01 * i  # can come out negative by rounding
    steps = pd.concat(runs, ignore_index=True).assign(study=study, scale="cpu")
    return Tables.from_frames(steps, study_claims={study: ("RV1", "RV2", "RV3")})


def test_the_report_of_a_river_valley_sweep_shows_and_links_the_figure():
    from sgdwalk.plots.report import render_report

    text = render_report(study_tables("river-valley"), n_boot=20)
    assert text.count("<figure id='fig-river_valley'>") == 1
    for cid in ("RV1", "RV2", "RV3"):
        start = text.index(f"<section class='claim' id='claim-{cid}'>")
        part = text[start:text.index("</section>", start)]
        assert "<a href='#fig-river_valley'>river_valley</a>" in part
    hrefs = set(re.findall(r"href='#([^']+)'", text))
    assert "fig-river_valley" in hrefs and hrefs <= set(re.findall(r"id='([^']+)'", text))
    # another study's runs with the same columns get no river-valley figure
    other = render_report(study_tables("my-schedules"), n_boot=20)
    assert "fig-river_valley" not in other


def test_a_single_river_valley_run_keeps_the_figure():
    from sgdwalk.plots.report import render_report

    t = study_tables("river-valley")
    one = t.subset([t.runs.index[0]])
    assert "<figure id='fig-river_valley'>" in render_report(one, n_boot=20)
