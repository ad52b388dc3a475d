"""Figures of the per-step line curves: the study's strip and a heat map over training."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import PowerNorm

from sgdwalk.analysis.frames import LINE_SOURCES, Tables
from sgdwalk.plots.base import (
    PALETTE,
    REFERENCE,
    Skipped,
    finish,
    new_figure,
    outside_legend,
    run_label,
)


def line_run(t: Tables, run_id: str | None = None):
    """(run id, source, curves (steps x grid, index step), grid) of the run to draw: the
    given one, else the first non-diverged SGD run (then any run) with stored curves."""
    order = list(t.runs.sort_values(["diverged"], kind="stable").index)
    sgd = [r for r in order if t.runs.loc[r, "algorithm"] == "sgd"]
    candidates = [run_id] if run_id else sgd + [r for r in order if r not in sgd]
    for src in LINE_SOURCES:
        vec = t.vectors(f"line_{src}")
        if not len(vec):
            continue
        grids = t.vectors("line_grid")
        for r in candidates:
            rows = vec[vec["run_id"] == r]
            g = grids[grids["run_id"] == r] if len(grids) else grids
            if len(rows) and len(g):
                cols = [c for c in rows.columns if c.startswith("v")]
                grid = g.iloc[0][cols].to_numpy(dtype=float)
                curves = rows.set_index("step")[cols].astype(float).sort_index()
                keep = np.isfinite(grid)
                return r, src, curves.loc[:, keep], grid[keep]
    return None


def strip(t: Tables, run_id: str | None = None, epoch: int | None = None, width: int = 24):
    """The study's strip: the line curves of up to `width` consecutive steps drawn end to
    end (step t's curve over [t, t+1]), with the cosines and the distance from init of the
    same steps below. epoch: 1-based epoch whose first steps are drawn (default: the
    first epoch with curves); with fewer steps per epoch than `width` (GD) the window runs
    on into the next epochs."""
    name = f"strip_e{epoch}" if epoch else "strip"
    title = "Line curves of consecutive steps, end to end"
    found = line_run(t, run_id)
    if found is None:
        return Skipped(name, title, "needs per-step line curves (vector line_probe/"
                       "line_batch and line_grid; walk.preset=line or higher)")
    r, src, curves, grid = found
    spe = int(t.runs.loc[r, "steps_per_epoch"]) if np.isfinite(
        t.runs.loc[r, "steps_per_epoch"]) else 1
    steps = curves.index.to_numpy()
    epochs = steps // spe + 1
    e = epoch if epoch is not None else int(epochs.min())
    window = _window(steps, epochs, e, width)
    if window is None:
        return Skipped(name, title, f"run {r} has no line curves in epoch {e} or later")
    label = run_label(t, r)
    e0, e1 = int(window[0] // spe + 1), int(window[-1] // spe + 1)
    when = f"epoch {e0}" if e0 == e1 else f"epochs {e0}-{e1}"
    title = f"{title}: {label}, {when}"
    fig, (ax, axc, axd) = new_figure(3, 1, height=7.5, sharex=True,
                                     gridspec_kw={"height_ratios": [3, 1.3, 1.3]})
    inside = (grid >= 0) & (grid <= 1)
    a = grid[inside]
    rows = t.steps[t.steps["run_id"] == r].set_index("step")
    for i, s in enumerate(window):
        f = curves.loc[s].to_numpy()[inside]
        ax.plot(s + a, f, color=PALETTE[0], lw=1.4, gid="line-curve",
                label="f_t(a) over [t, t+1]" if i == 0 else None)
        ax.plot([s], [f[a == 0][0]] if (a == 0).any() else [np.nan], "k.", ms=4,
                label="iterate θ_t" if i == 0 else None)
    fa, fl = f"line_{src}_floor_a", f"line_{src}_floor_loss"
    if fa in rows.columns and fl in rows.columns:
        w = rows.reindex(window)
        ax.plot(window + w[fa].to_numpy(), w[fl].to_numpy(), "v", color=PALETTE[1], ms=5,
                label="valley floor (a*_t, F_t)")
    ax.set_ylabel(f"training loss on the {src} set (nats)")
    ax.set_title(f"run {_name(t, r)}; source {src}", fontsize=9)
    w = rows.reindex(window)
    drawn = False
    for col, fmt, color in (("cos_update", "o-", PALETTE[4]), ("cos_grad", "x--", PALETTE[2])):
        if col in w.columns and np.isfinite(w[col].to_numpy(float)).any():
            axc.plot(window, w[col], fmt, color=color, ms=3, lw=1, label=col)
            drawn = True
    axc.axhline(0, color=REFERENCE, lw=0.6, label="cosine 0")
    axc.set_ylabel("cosine of consecutive\nupdates / gradients")
    axc.set_ylim(-1.05, 1.05)
    if not drawn:
        axc.text(0.5, 0.5, "no cosines stored for these steps", transform=axc.transAxes,
                 ha="center", fontsize=8)
    if "dist_init" in w.columns:
        axd.plot(window + 1, w["dist_init"], "o-", color=PALETTE[3], ms=3, lw=1,
                 label="‖θ_{t+1} − θ_0‖")
    axd.set_ylabel("distance from init\n(L2, parameter units)")
    axd.set_xlabel("step t (update number; curve t spans [t, t+1])")
    ax.set_xlim(window[0], window[-1] + 1)
    outside_legend(fig)
    caption = (f"Each step's training loss along its own update is drawn over [t, t+1], so "
               f"consecutive curves meet at the shared iterate; triangles mark the valley "
               f"floor, and the panels below show the cosines of consecutive updates and "
               f"gradients and the distance from initialisation for the same steps "
               f"{window[0]}-{window[-1]} ({when}).")
    return finish(name, fig, title, caption)


def _window(steps: np.ndarray, epochs: np.ndarray, epoch: int, width: int):
    """Up to `width` consecutive steps with curves from the first one in `epoch` (or later);
    when fewer than two follow it (e.g. GD, one step per epoch, at the last epoch), the
    consecutive steps ending there. None when no curve is at or after `epoch`."""
    later = np.nonzero(epochs >= epoch)[0]
    if not len(later):
        return None
    i0 = int(later[0])
    window = _consecutive(steps[i0:i0 + width])
    if len(window) < 2 and i0 > 0:
        back = steps[max(0, i0 - width + 1):i0 + 1]
        gaps = np.nonzero(np.diff(back) != 1)[0]
        window = back[gaps[-1] + 1:] if len(gaps) else back
    return window


def _consecutive(steps: np.ndarray) -> np.ndarray:
    gaps = np.nonzero(np.diff(steps) != 1)[0]
    return steps[:gaps[0] + 1] if len(gaps) else steps


def _name(t: Tables, run_id: str) -> str:
    """The run as a reader finds it: its folder name (study/folder in a sweep)."""
    folder = str(t.runs.loc[run_id, "run_dir"] or "")
    name = folder.rstrip("/").rsplit("/", 1)[-1] if folder else str(run_id)
    study = t.runs.loc[run_id, "study"]
    return f"{study}/{name}" if isinstance(study, str) and study else name


def windows(steps: np.ndarray) -> list[np.ndarray]:
    """The runs of consecutive steps in sorted `steps` (a run's dense windows)."""
    if not len(steps):
        return []
    cuts = np.nonzero(np.diff(steps) != 1)[0] + 1
    return np.split(steps, cuts)


def step_ticks(steps: np.ndarray, spe: float, most: int = 8):
    """(column positions, labels) for an axis whose columns are `steps` (sorted, maybe in
    several windows): in one window, round step numbers evenly spaced; in several, the
    first step of each window (at most `most`, evenly chosen) with its epoch."""
    from matplotlib.ticker import MaxNLocator

    wins = windows(steps)
    if len(wins) == 1:
        vals = MaxNLocator(most, integer=True).tick_values(steps[0], steps[-1])
        vals = vals[(vals >= steps[0]) & (vals <= steps[-1])].astype(int)
        return list(vals - steps[0]), [str(v) for v in vals]
    starts = np.cumsum([0] + [len(w) for w in wins[:-1]])
    pick = np.unique(np.linspace(0, len(wins) - 1, min(most, len(wins))).round().astype(int))
    epoch = (lambda s: f"\ne{int(s // spe) + 1}") if np.isfinite(spe) and spe > 0 \
        else (lambda s: "")
    return [int(starts[i]) for i in pick], [f"{wins[i][0]}{epoch(wins[i][0])}" for i in pick]


def line_heatmap(t: Tables, run_id: str | None = None):
    """Per-step line curves over training as a heat map (height above the step's own
    floor) with the floor position a*_t as dots, and Cockpit's alpha in a panel below."""
    name, title = "line_heatmap", "Line curves over training"
    found = line_run(t, run_id)
    if found is None:
        return Skipped(name, title, "needs per-step line curves (vector line_probe/"
                       "line_batch and line_grid; walk.preset=line or higher)")
    r, src, curves, grid = found
    z = curves.to_numpy()
    z = z - np.nanmin(z, axis=1, keepdims=True)
    steps = curves.index.to_numpy()
    rows = t.steps[t.steps["run_id"] == r].set_index("step").reindex(steps)
    fa, al = f"line_{src}_floor_a", f"line_{src}_alpha"
    has_alpha = al in rows.columns and np.isfinite(rows[al].to_numpy(float)).any()
    if has_alpha:  # alpha in its own panel below; none stored: no empty panel
        fig, (ax, axa) = new_figure(2, 1, height=6.0, sharex=True,
                                    gridspec_kw={"height_ratios": [3, 1.2]})
    else:
        fig, ax = new_figure(1, 1, height=4.6)
        axa = None
    bottom = axa if has_alpha else ax
    edges_a = np.concatenate([[grid[0] - (grid[1] - grid[0]) / 2],
                              (grid[1:] + grid[:-1]) / 2,
                              [grid[-1] + (grid[-1] - grid[-2]) / 2]])
    pos = np.arange(len(steps))
    # square-root colour scale: a few tall early curves would leave the rest black
    mesh = ax.pcolormesh(np.arange(len(steps) + 1) - 0.5, edges_a, z.T, cmap="magma",
                         shading="flat", rasterized=True, norm=PowerNorm(0.5))
    fig.colorbar(mesh, ax=ax, label="f_t(a) − min_a f_t (nats; square-root scale)")
    for a in (0, 1):
        ax.axhline(a, color="w", lw=0.6, ls=":")
    cuts = np.cumsum([len(w) for w in windows(steps)])[:-1]
    for c in cuts:  # where one dense window ends and the next begins
        for a_ in (ax, axa) if has_alpha else (ax,):
            a_.axvline(c - 0.5, color="0.6", lw=0.8)
    if fa in rows.columns:
        ax.plot(pos, rows[fa], ".", color="#56B4E9", ms=2.5, mew=0,
                label="floor position a*_t (dots)")
    if has_alpha:
        axa.plot(pos, np.clip(rows[al], -1, 5), ".", color=PALETTE[2], ms=3, mew=0,
                 label="alpha = 1/a* − 1 (clipped to [−1, 5])")
        axa.axhline(0, color=REFERENCE, lw=0.6, label="alpha 0: landed on the floor")
        axa.set_ylim(-1.2, 5.2)
        axa.set_ylabel("Cockpit's alpha\n(1/a* − 1)")
    spe = float(t.runs.loc[r, "steps_per_epoch"])
    ticks, labels = step_ticks(steps, spe)
    bottom.set_xticks(ticks, labels)
    several = len(cuts) > 0
    bottom.set_xlabel("step t" + (" and epoch (ticks: first step of a dense window; grey "
                               "lines: gaps between windows)" if several else ""))
    ax.set_ylabel("step fraction a (0: θ_t, 1: θ_{t+1})")
    outside_legend(fig, markerscale=4)
    title = f"{title}: {run_label(t, r)}"
    caption = ("Each column is one step's line curve, coloured by its height above that "
               "step's own minimum; the light-blue dots are where the minimum lies (between "
               "the dotted lines at 0 and 1 means an interior valley floor), and the panel "
               "below (when any floor was measured inside the grid) gives Cockpit's alpha "
               "of the same step, above 0 when the step overshot the floor.")
    return finish(name, fig, title, caption)
