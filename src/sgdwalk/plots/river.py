"""The river-valley figure: lr, loss, floor loss, height, sharpness and preconditioned
sharpness against step, one column per schedule (the `river-valley` study; claims RV1-RV3)."""

from __future__ import annotations

import numpy as np

from sgdwalk.analysis.claims_river import ECON, measured_econ, schedule_of
from sgdwalk.analysis.frames import Tables, series
from sgdwalk.plots.base import Skipped, colors, finish, new_figure

SMOOTH = 25  # steps in the rolling mean of the per-step economy values
SHARP = "sharp_lambda_max"  # walk.sharpness: lambda_max of the probe-set loss's Hessian
PSHARP = ("psharp_lambda_max", "psharp_edge")  # walk.precond_sharpness: of P^-1 H, lr x it / edge


def _measured(t: Tables, run_id: str, *names: str):
    """The run's steps where every one of `names` is finite (an empty frame when one of them
    is not a column)."""
    if not all(n in t.steps.columns for n in names):
        return None
    rows = series(t.steps, run_id, *names)
    ok = np.isfinite(rows[list(names)].to_numpy(dtype=float)).all(axis=1)
    return rows[ok] if ok.any() else None


def _sharpness(ax, t, r, c) -> bool:
    """lambda_max (solid, dots) and 2/lr at the same steps (dotted); False without data."""
    rows = _measured(t, r, SHARP, "lr")
    if rows is None:
        return False
    ax.plot(rows["step"], rows[SHARP], color=c, marker=".")
    lr = rows["lr"].to_numpy(dtype=float)
    live = lr > 0
    ax.plot(rows["step"][live], 2 / lr[live], color=c, linestyle=":")
    return True


def _precond(ax, t, r, c) -> bool:
    """lambda_max(P^-1 H) (solid, dots) and, where psharp_edge is stored, the adaptive edge
    in the same units, lambda_max / psharp_edge = (2 + 2 beta1) / ((1 - beta1) lr)
    (dotted); False without data."""
    rows = _measured(t, r, PSHARP[0])
    if rows is None:
        return False
    ax.plot(rows["step"], rows[PSHARP[0]], color=c, marker=".")
    edge = _measured(t, r, *PSHARP)
    if edge is not None:
        ratio = edge[PSHARP[1]].to_numpy(dtype=float)
        live = ratio > 0
        ax.plot(edge["step"][live], edge[PSHARP[0]][live] / ratio[live], color=c,
                linestyle=":")
    return True


def river_valley(t: Tables):
    """One column per optim.schedule; rows: the applied lr; the loss (solid) and the economy
    floor loss (dashed); the economy height; where stored, the sharpness with 2/lr and the
    preconditioned sharpness with its edge (log scale, dotted thresholds). One colour per
    peak lr; loss, floor and height are rolling means over SMOOTH steps of the steps with
    measured floors, the line broken where more than SMOOTH steps in a row had none. A
    sharpness row appears only when some run stored it; a panel of it whose runs stored none
    is not drawn."""
    name, title = "river_valley", "Loss = floor + height under each lr schedule"
    runs = t.runs
    if not len(runs) or not all(c in t.steps.columns for c in ("lr", *ECON)):
        return Skipped(name, title, "needs lr and econ_floor_loss, econ_height (walk.economy) "
                       "(e.g. `sgdwalk sweep river-valley`)")
    by_schedule: dict[str, list[str]] = {}
    for r in runs.index:
        by_schedule.setdefault(schedule_of(runs, r), []).append(r)
    order = [s for s in ("constant", "step", "cosine", "wsd") if s in by_schedule]
    extra = [(draw, label) for draw, label, col in (
        (_sharpness, "sharpness (—), 2/lr (···)", SHARP),
        (_precond, "precond. sharpness (—),\nits edge (···)", PSHARP[0]))
        if any(_measured(t, r, col) is not None for r in runs.index)]
    n_rows = 3 + len(extra)
    fig, axes = new_figure(n_rows, len(order), height=2.5 * n_rows, sharex=True, sharey="row")
    axes = np.asarray(axes).reshape(n_rows, len(order))
    lrs = sorted(runs["lr"].unique())
    shade = dict(zip(lrs, colors(len(lrs), "plasma")))
    for j, sched in enumerate(order):
        drawn = [False] * len(extra)
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
            for i, (draw, _) in enumerate(extra):
                drawn[i] = draw(axes[3 + i, j], t, r, c) or drawn[i]
        for i, done in enumerate(drawn):
            ax = axes[3 + i, j]
            if done:
                ax.set_yscale("log")
            else:
                ax.set_visible(False)  # no run of this schedule stored it
        axes[0, j].set_title(sched, fontsize=10)
        bottom = [ax for ax in axes[:, j] if ax.get_visible()][-1]
        bottom.set_xlabel("step")
        bottom.xaxis.set_tick_params(labelbottom=True)
    labels = ["lr applied", "loss (—), floor loss (--)", "height (nats)",
              *(label for _, label in extra)]
    for row, label in zip(axes, labels):
        [ax for ax in row if ax.get_visible()][0].set_ylabel(label)
    axes[0, 0].legend(fontsize=8)
    caption = ("Each step's batch loss is its economy floor plus its height (rolling means "
               f"over {SMOOTH} steps with measured floors); in the river-valley picture "
               "the height stays up while the lr is at its peak and falls with the decay, "
               "while the floor keeps falling (claims RV1-RV3).")
    if extra:
        caption += (" Where measured, the top Hessian eigenvalue of the probe-set loss "
                    "against 2/lr, and that of P^-1 H (P: AdamW's diagonal preconditioner) "
                    "against its adaptive edge (2 + 2 beta1) / ((1 - beta1) lr) (Cohen et al. "
                    "2022); these are shown, not tested.")
    return finish(name, fig, title, caption)
