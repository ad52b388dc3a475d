"""Figures of one run: whatever it stored, over training.

`run_figures(tables, run_id)` draws, in reading order, only the figures (and within them
only the panels) whose data the run stored, so a report never shows an empty panel:

    training     loss per step, evaluation losses and accuracies, the learning rate
    strip_w*     the line curves of each dense window, end to end (lines.strip)
    line_heatmap the line curves over training
    floors       floor position a*, alpha, height and relative height over training
    cosines      cosines of consecutive updates and gradients, and of gradient and update
    distance_run distance from init, path length, their ratio, gradient and update norms
    layers       distance from init and path length per layer (small multiples)
    curvature    sharpness with 2/lr, lr x lambda_max and lr x kappa against 2
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sgdwalk.analysis.frames import LINE_SOURCES, Tables
from sgdwalk.plots.base import (
    PALETTE,
    REFERENCE,
    Figure,
    Skipped,
    finish,
    new_figure,
    outside_legend,
)
from sgdwalk.plots.lines import line_heatmap, line_run, strip, windows

SMOOTH = 25  # steps in the running median drawn over noisy per-step series
MAX_STRIPS = 4  # dense windows drawn as strips (evenly chosen when there are more)
ALPHA = "Cockpit's alpha\n(1/a* − 1)"


def _series(t: Tables, run_id: str, column: str) -> pd.Series:
    """column over steps >= 0 of the run (index step), finite values only."""
    if column not in t.steps.columns:
        return pd.Series(dtype=float)
    rows = t.steps[(t.steps["run_id"] == run_id) & (t.steps["step"] >= 0)]
    s = rows.set_index("step")[column].astype(float)
    return s[np.isfinite(s.to_numpy())]


def _stretches(s: pd.Series) -> list[pd.Series]:
    """`s` (index step) cut where steps are missing: its runs of consecutive steps."""
    cuts = np.nonzero(np.diff(s.index.to_numpy()) != 1)[0] + 1
    bounds = [0, *cuts, len(s)]
    return [s.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _panels(t: Tables, run_id: str, panels):
    """The panels with data: [(ylabel, [(column, label, style)])] keeping only columns
    with finite values that vary, and panels with at least one such column; a column that
    is one constant value is not drawn but named in the caption (`constants`)."""
    out, constants = [], []
    for ylabel, cols in panels:
        have = []
        for c, lab, st in cols:
            s = _series(t, run_id, c)
            if not len(s):
                continue
            if len(s) > 1 and np.ptp(s.to_numpy()) <= 1e-9 * (1 + abs(float(s.iloc[0]))):
                constants.append(f"{lab} = {float(s.iloc[0]):.6g} at every step")
                continue
            have.append((c, lab, st))
        if have:
            out.append((ylabel, have))
    return out, constants


def _with(caption: str, constants: list[str]) -> str:
    return caption + (f" Not drawn, constant: {'; '.join(constants)}." if constants else "")


def _draw(name, title, caption, t, run_id, panels, smooth=(), height_each=2.0, refs=None,
          ylims=None):
    """One column of panels sharing the step axis; `smooth`: columns drawn as faint
    points under their running median; refs: ylabel -> [(y, label)] reference lines;
    ylims: ylabel -> (low, high) for a panel whose outliers would flatten the rest."""
    fig, axes = new_figure(len(panels), 1, height=max(3.6, height_each * len(panels) + 1),
                           sharex=True)
    axes = np.atleast_1d(axes)
    for ax, (ylabel, cols) in zip(axes, panels):
        for col, label, style in cols:
            s = _series(t, run_id, col)
            if col in smooth and len(s) > SMOOTH:
                ax.plot(s.index, s, ".", ms=1.5, alpha=0.25, color=style.get("color"))
                # one running median per stretch of consecutive steps (a dense window):
                # never a line drawn across the steps in between
                for i, part in enumerate(_stretches(s)):
                    med = part.rolling(SMOOTH, center=True, min_periods=1).median()
                    ax.plot(med.index, med, lw=1.2, **style,
                            label=f"{label} (running median of {SMOOTH})" if i == 0 else None)
            else:
                ax.plot(s.index, s, label=label, **{"lw": 1.2, **style})
        for y, label in (refs or {}).get(ylabel, []):
            ax.axhline(y, color=REFERENCE, lw=0.7, ls="--", label=label)
        ax.set_ylabel(ylabel)
        if ylabel in (ylims or {}):
            ax.set_ylim(*ylims[ylabel])
    axes[-1].set_xlabel("step t (updates)")
    outside_legend(fig, fontsize=7, markerscale=3)
    return finish(name, fig, title, caption)


def training(t: Tables, run_id: str):
    name, title = "training", "Loss, accuracy and learning rate"
    panels, constants = _panels(t, run_id, [
        ("loss (nats)", [("loss", "mini-batch loss f_t(0)", {"color": PALETTE[0]}),
                         ("train_loss", "train loss (eval mode)",
                          {"color": PALETTE[1], "marker": "o", "ms": 3}),
                         ("val_loss", "validation loss",
                          {"color": PALETTE[2], "marker": "s", "ms": 3}),
                         ("test_loss", "test loss",
                          {"color": PALETTE[3], "marker": "^", "ms": 3})]),
        ("accuracy (fraction)", [("train_acc", "train accuracy",
                                  {"color": PALETTE[1], "marker": "o", "ms": 3}),
                                 ("val_acc", "validation accuracy",
                                  {"color": PALETTE[2], "marker": "s", "ms": 3}),
                                 ("test_acc", "test accuracy",
                                  {"color": PALETTE[3], "marker": "^", "ms": 3})]),
        ("learning rate", [("lr", "learning rate", {"color": PALETTE[4]})]),
    ])
    if not panels:
        return Skipped(name, title, "needs loss, evaluations or lr")
    caption = ("The loss of each update on its own mini-batch (faint points, with their "
               "running median) and, at the end of each epoch, the losses and accuracies "
               "on the whole training, validation and test splits; the learning rate the "
               "optimizer used at each step.")
    return _draw(name, title, _with(caption, constants), t, run_id, panels, smooth=("loss",))


def window_strips(t: Tables, run_id: str) -> list:
    """One strip per dense window of line curves (at most MAX_STRIPS, evenly chosen);
    a run with curves at every step: its first and last epoch."""
    found = line_run(t, run_id)
    if found is None:
        return []
    _, _, curves, _ = found
    wins = windows(curves.index.to_numpy())
    spe = t.runs.loc[run_id, "steps_per_epoch"]
    if len(wins) == 1:
        if not math.isfinite(spe):
            return [strip(t, run_id)]
        first = int(wins[0][0] // spe + 1)
        last = int(wins[0][-1] // spe + 1)
        shown = [strip(t, run_id, epoch=first)]
        if last != first:
            shown.append(strip(t, run_id, epoch=last))
        return _unique(shown)
    pick = np.unique(np.linspace(0, len(wins) - 1, min(MAX_STRIPS, len(wins))).round()
                     .astype(int))
    out = []
    for i in pick:
        e = int(wins[i][0] // spe + 1) if math.isfinite(spe) else None
        f = strip(t, run_id, epoch=e)
        if isinstance(f, Figure):
            f.name = f"strip_w{i + 1}"
        out.append(f)
    return _unique(out)


def _unique(figs):
    seen, out = set(), []
    for f in figs:
        if isinstance(f, Figure) and f.title not in seen:
            seen.add(f.title)
            out.append(f)
    return out


def floors(t: Tables, run_id: str):
    name, title = "floors", "Valley floor and height over training"
    src = next((s for s in LINE_SOURCES if len(_series(t, run_id, f"line_{s}_floor_a"))),
               None)
    cols = []
    if src:
        p = f"line_{src}"
        cols = [("floor position a* (step fraction)",
                 [(f"{p}_floor_a", f"a*_t on the {src} line", {"color": PALETTE[0]}),
                  ("econ_floor_a", "a*_t of the economy model", {"color": PALETTE[1]})]),
                (ALPHA, [(f"{p}_alpha", f"alpha on the {src} line", {"color": PALETTE[2]})]),
                ("height f_t(0) − F_t (nats)",
                 [(f"{p}_height", f"height on the {src} line", {"color": PALETTE[0]}),
                  ("econ_height", "height of the economy model", {"color": PALETTE[1]})]),
                ("relative height h_t / f_t(0)",
                 [(f"{p}_rel_height", f"relative height ({src})", {"color": PALETTE[3]})])]
    else:
        cols = [("floor position a* (step fraction)",
                 [("econ_floor_a", "a*_t of the economy model", {"color": PALETTE[1]})]),
                ("height f_t(0) − F_t (nats)",
                 [("econ_height", "height of the economy model", {"color": PALETTE[1]})])]
    panels, constants = _panels(t, run_id, cols)
    if not panels:
        return Skipped(name, title, "needs line_S_floor_a / econ_floor_a (walk.preset "
                       "economy or line)")
    smooth = {c for _, cs in panels for c, _, _ in cs}
    caption = ("Where each step's valley floor lies along its update (a* = 1: the update "
               "lands on it; a floor at the grid's edge is censored and stored as the edge), "
               "Cockpit's alpha of the same floors (axis cut at 5), and how high the "
               "iterate sits above its floor, absolute and relative to the loss (faint "
               "points, running medians).")
    return _draw(name, title, _with(caption, constants), t, run_id, panels, smooth=smooth,
                 refs={"floor position a* (step fraction)": [(1.0, "a* = 1 (θ_{t+1})")],
                       ALPHA: [(0.0, "alpha 0: landed on the floor")]},
                 ylims={ALPHA: (-1.2, 5.2)})


def cosines(t: Tables, run_id: str):
    name, title = "cosines", "Cosines of consecutive updates and gradients"
    panels, constants = _panels(t, run_id, [
        ("cosine", [("cos_update", "cos(u_{t−1}, u_t)", {"color": PALETTE[0]}),
                    ("cos_grad", "cos(g_{t−1}, g_t)", {"color": PALETTE[1], "ls": "--"})]),
        ("cosine of gradient\nand update", [("cos_grad_update", "cos(g_t, u_t)",
                                             {"color": PALETTE[2]})]),
    ])
    if not panels:
        return Skipped(name, title, "needs cos_update or cos_grad (walk.trajectory)")
    caption = ("Cosines between consecutive updates and between consecutive mini-batch "
               "gradients (faint points, running medians): below 0 the iterate turns back "
               "across the valley from one step to the next.")
    return _draw(name, title, _with(caption, constants), t, run_id, panels,
                 smooth={"cos_update", "cos_grad", "cos_grad_update"},
                 refs={"cosine": [(0.0, "cosine 0")]})


def distance_run(t: Tables, run_id: str):
    name, title = "distance_run", "Distance from initialisation and path length"
    panels, constants = _panels(t, run_id, [
        ("L2 (parameter units)", [("dist_init", "‖θ_{t+1} − θ_0‖", {"color": PALETTE[0]}),
                                  ("path_length", "path length Σ‖u_s‖",
                                   {"color": PALETTE[1], "ls": "--"})]),
        ("distance / path length", [("dist_path_ratio", "dist_init / path_length",
                                     {"color": PALETTE[2]})]),
        ("norm", [("grad_norm", "‖g_t‖", {"color": PALETTE[3]}),
                  ("update_norm", "‖u_t‖", {"color": PALETTE[4]})]),
    ])
    if not panels:
        return Skipped(name, title, "needs dist_init or path_length (walk.trajectory)")
    caption = ("How far the parameters have moved from their initial values against the "
               "length of the path walked to get there (a ratio near 0: the walk doubles "
               "back), with the gradient and update norms of each step.")
    return _draw(name, title, _with(caption, constants), t, run_id, panels,
                 smooth={"grad_norm", "update_norm"})


def layers(t: Tables, run_id: str):
    """Small multiples: one panel per layer with its distance from init and path length."""
    name, title = "layers", "Distance from initialisation and path length per layer"
    dist = t.vectors("dist_init_layers")
    path = t.vectors("path_length_layers")
    dist = dist[dist["run_id"] == run_id] if len(dist) else dist
    path = path[path["run_id"] == run_id] if len(path) else path
    if not len(dist) and not len(path):
        return Skipped(name, title, "needs dist_init_layers (walk.trajectory)")
    cols = [c for c in (dist if len(dist) else path).columns if c.startswith("v")]
    names = list(t.meta(run_id).get("layers") or [])
    names = names if len(names) == len(cols) else [f"layer {i}" for i in range(len(cols))]
    n = len(cols)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig, axes = new_figure(nrows, ncols, height=2.2 * nrows + 1, sharex=True, squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        if i >= n:
            ax.set_visible(False)
            continue
        for frame, label, style in ((dist, "‖θ_{t+1} − θ_0‖ of the layer", "-"),
                                    (path, "path length of the layer", "--")):
            if len(frame):
                s = frame.sort_values("step")
                ax.plot(s["step"], s[cols[i]].astype(float), ls=style,
                        color=PALETTE[0 if style == "-" else 1], lw=1.1, label=label)
        ax.set_title(names[i], fontsize=9)
        if i % ncols == 0:
            ax.set_ylabel("L2 (parameter units)")
        if i >= n - ncols:
            ax.set_xlabel("step t (updates)")
    outside_legend(fig, fontsize=7)
    caption = ("One panel per parameter tensor, in the model's order: its distance from "
               "its initial value (solid) and the length of its own path (dashed); each "
               "panel has its own scale, so the layers that move most stand out by shape, "
               "not by height.")
    return finish(name, fig, title, caption)


def curvature(t: Tables, run_id: str):
    name, title = "curvature", "Curvature and sharpness"
    lr = t.runs.loc[run_id, "lr"]
    panels, constants = _panels(t, run_id, [
        ("λ_max, κ_t\n(nats per unit²)",
         [("sharp_lambda_max", "top Hessian eigenvalue λ_max", {"color": PALETTE[0],
                                                                "marker": ".", "ms": 4}),
          ("curv_kappa", "κ_t = uᵀHu / ‖u‖²", {"color": PALETTE[1]})]),
        ("lr × curvature", [("sharp_lr_lambda", "lr × λ_max", {"color": PALETTE[0],
                                                               "marker": ".", "ms": 4}),
                            ("curv_lr_kappa", "lr × κ_t", {"color": PALETTE[1]})]),
    ])
    if not panels:
        return Skipped(name, title, "needs sharp_lambda_max or curv_kappa (walk.preset "
                       "curvature or full)")
    refs = {"lr × curvature": [(2.0, "2: GD on a quadratic is unstable above")]}
    if math.isfinite(lr) and lr > 0:
        refs["λ_max, κ_t\n(nats per unit²)"] = [(2 / lr, f"2 / lr = {2 / lr:g}")]
    caption = ("The sharpness (largest Hessian eigenvalue) and the curvature along each "
               "update (faint points, running medians), with 2/lr marked; below, the same "
               "times the learning rate against 2, the stability limit of GD on a "
               "quadratic.")
    return _draw(name, title, _with(caption, constants), t, run_id, panels,
                 smooth={"curv_kappa", "curv_lr_kappa"}, refs=refs)


def run_figures(t: Tables, run_id: str | None = None) -> list[Figure]:
    """Every figure the run (default: the only one) has data for, in reading order;
    figures without data are left out (never drawn empty)."""
    run_id = run_id if run_id is not None else t.runs.index[0]
    out = [training(t, run_id), *window_strips(t, run_id), line_heatmap(t, run_id),
           floors(t, run_id), cosines(t, run_id), distance_run(t, run_id), layers(t, run_id),
           curvature(t, run_id)]
    return [f for f in out if isinstance(f, Figure)]
