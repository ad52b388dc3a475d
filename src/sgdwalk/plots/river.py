"""The river-valley figure: lr, loss, floor loss and height against step, one column per
schedule (the `river-valley` study; claims RV1-RV3)."""

from __future__ import annotations

import numpy as np

from sgdwalk.analysis.claims_river import ECON, measured_econ, schedule_of
from sgdwalk.analysis.frames import Tables, series
from sgdwalk.plots.base import Skipped, colors, finish, new_figure

SMOOTH = 25  # steps in the rolling mean of the per-step economy values


def river_valley(t: Tables):
    """One column per optim.schedule, rows: the applied lr; the loss (solid) and the
    economy floor loss (dashed); the economy height. One colour per peak lr; loss, floor
    and height are rolling means over SMOOTH steps of the steps with measured floors, the
    line broken where more than SMOOTH steps in a row had none."""
    name, title = "river_valley", "Loss = floor + height under each lr schedule"
    runs = t.runs
    if not len(runs) or not all(c in t.steps.columns for c in ("lr", *ECON)):
        return Skipped(name, title, "needs lr and econ_floor_loss, econ_height (walk.economy) "
                       "(e.g. `sgdwalk sweep river-valley`)")
    by_schedule: dict[str, list[str]] = {}
    for r in runs.index:
        by_schedule.setdefault(schedule_of(runs, r), []).append(r)
    order = [s for s in ("constant", "step", "cosine", "wsd") if s in by_schedule]
    fig, axes = new_figure(3, len(order), height=7.5, sharex=True, sharey="row")
    axes = np.asarray(axes).reshape(3, len(order))
    lrs = sorted(runs["lr"].unique())
    shade = dict(zip(lrs, colors(len(lrs), "plasma")))
    for j, sched in enumerate(order):
        for r in by_schedule[sched]:
            c, label = shade[runs.loc[r, "lr"]], f"peak lr {runs.loc[r, 'lr']:g}"
            lr = series(t.steps, r, "lr")
            axes[0, j].plot(lr["step"], lr["lr"], color=c, label=label)
            rows = measured_econ(t, r)
            smooth = rows[list(ECON)].rolling(SMOOTH, min_periods=1).mean()
            # a break in the line after more than SMOOTH steps without a measured floor
            smooth[rows["step"].diff().to_numpy() > SMOOTH] = np.nan
            floor, height = smooth["econ_floor_loss"], smooth["econ_height"]
            axes[1, j].plot(rows["step"], floor + height, color=c)
            axes[1, j].plot(rows["step"], floor, color=c, linestyle="--")
            axes[2, j].plot(rows["step"], height, color=c)
        axes[0, j].set_title(sched, fontsize=10)
        axes[2, j].set_xlabel("step")
    axes[0, 0].set_ylabel("lr applied")
    axes[1, 0].set_ylabel("loss (—), floor loss (--)")
    axes[2, 0].set_ylabel("height (nats)")
    axes[0, 0].legend(fontsize=8)
    caption = ("Each step's batch loss is its economy floor plus its height (rolling means "
               f"over {SMOOTH} steps with measured floors); in the river-valley picture "
               "the height stays up while the lr is at its peak and falls with the decay, "
               "while the floor keeps falling (claims RV1-RV3).")
    return finish(name, fig, title, caption)
