"""Figures across the runs of a sweep: height vs lr, distance vs epochs and iterations,
sharpness and test accuracy over lr x B, alignment vs batch size."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sgdwalk.analysis.frames import Tables, height_column
from sgdwalk.plots.base import (
    LINESTYLES,
    PALETTE,
    REFERENCE,
    Skipped,
    condition_labels,
    condition_styles,
    finish,
    new_figure,
    ordered,
    outside_legend,
    text_color,
)


def _sgd(t: Tables) -> pd.DataFrame:
    runs = t.runs
    return runs[(runs["algorithm"] == "sgd") & ~runs["diverged"]]


def _rows(t: Tables, runs, column: str) -> pd.DataFrame:
    s = t.steps
    if column not in s.columns:
        # copied first: assigning to a fragmented frame's view warns (PerformanceWarning)
        rows = s.iloc[:0].copy().assign(**{column: np.zeros(0)})
    else:
        rows = s[s["run_id"].isin(runs.index) & (s["step"] >= 0) & np.isfinite(s[column])]
    extra = runs[["condition", "label", "lr", "batch_size"]].rename(
        columns={"lr": "run_lr", "batch_size": "run_batch"})  # "lr" is also a metric
    return rows.merge(extra, left_on="run_id", right_index=True)


def condition_curves(t: Tables, runs, column: str, x: str = "step") -> dict:
    """condition -> (x values, mean over seeds of `column`) for the given runs."""
    rows = _rows(t, runs, column)
    out = {}
    for c, g in rows.groupby("condition"):
        m = g.groupby(x)[column].mean()
        out[c] = (m.index.to_numpy(dtype=float), m.to_numpy())
    return out


def height_vs_lr(t: Tables):
    """Median height per epoch against learning rate, one line per batch size, one panel
    for the first and one for the last epoch with line curves."""
    name, title = "height_vs_lr", "Height above the valley floor against learning rate"
    runs = _sgd(t)
    col = height_column(t.steps, list(runs.index))
    if col is None or runs["lr"].nunique() < 2:
        return Skipped(name, title, "needs line_*_height or econ_height on SGD runs with >= 2 "
                       "learning rates (e.g. `sgdwalk sweep lr-batch`)")
    rows = _rows(t, runs, col)
    rows = rows.assign(epoch=rows["step"] // rows["run_id"].map(runs["steps_per_epoch"]) + 1)
    per_run = rows.groupby(["run_id", "epoch"])[col].median().reset_index()
    per_run = per_run.merge(runs[["lr", "batch_size"]], left_on="run_id", right_index=True)
    epochs = sorted(per_run["epoch"].unique())
    shown = [epochs[0]] if len(epochs) == 1 else [epochs[0], epochs[-1]]
    fig, axes = new_figure(1, len(shown), height=4.2, sharey=True)
    axes = np.atleast_1d(axes)
    bs = sorted(per_run["batch_size"].unique())
    cs = PALETTE[:len(bs)]  # the hue of each batch size, as in every figure
    for ax, e in zip(axes, shown):
        d = per_run[per_run["epoch"] == e]
        for b, c in zip(bs, cs):
            g = d[d["batch_size"] == b].groupby("lr")[col]
            m, lo, hi = g.mean(), g.min(), g.max()
            if len(m):
                # clipped at 0: the mean of equal values can round past their max
                ax.errorbar(m.index, m, yerr=[(m - lo).clip(lower=0), (hi - m).clip(lower=0)],
                            fmt="o-", color=c, capsize=3,
                            label=f"B = {int(b)}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (step on the mean loss)")
        ax.set_title(f"epoch {int(e)}", fontsize=10)
    outside_legend(fig, axes[:1])
    axes[0].set_ylabel(f"median height f_t(0) − F_t (nats; {col})")
    caption = ("Each point is the median, over the steps of one epoch, of how far the "
               "iterate sits above its own valley floor, averaged over seeds (bars: seed "
               "range); lines rising to the right mean a larger learning rate keeps SGD "
               "higher above the floor (claim C3).")
    return finish(name, fig, title, caption)


def distance(t: Tables):
    """Distance from init against epochs and against iterations, one line per condition
    (colour: batch size, line style: learning rate)."""
    name, title = "distance", "Distance from initialisation"
    runs = _sgd(t)
    by_epoch = condition_curves(t, runs, "dist_init", "epochs_done")
    if not by_epoch:
        return Skipped(name, title, "needs dist_init on SGD runs (walk.trajectory; preset "
                       "cheap)")
    by_step = condition_curves(t, runs, "dist_init", "step")
    styles, labels = condition_styles(runs), condition_labels(runs)
    fig, (a1, a2) = new_figure(1, 2, height=4.2, sharey=True)
    for c in ordered(runs, by_epoch):
        style = dict(color=styles[c]["color"], ls=styles[c]["ls"], lw=1.3)
        a1.plot(*by_epoch[c], label=labels[c], **style)
        a2.plot(by_step[c][0] + 1, by_step[c][1], **style)
    a1.set_xlabel("epochs done")
    a2.set_xlabel("iterations (updates)")
    a2.set_xscale("log")
    a1.set_ylabel("‖θ_t − θ_0‖ (L2, parameter units)")
    outside_legend(fig, [a1], fontsize=7)
    a1.set_title("at matched epochs", fontsize=10)
    a2.set_title("at matched iterations", fontsize=10)
    caption = ("Distance of the parameters from their initial values, averaged over seeds, "
               "against epochs (left, same data seen) and against updates (right, same "
               "number of steps); colour is the batch size and line style the learning rate, "
               "so at one line style the lines of small batches above those of large ones "
               "mean smaller batches explore further (claim C4).")
    return finish(name, fig, title, caption)


def sharpness(t: Tables):
    """Top Hessian eigenvalue over training with the 2/lr stability line, and the final
    test accuracy over the lr x B grid."""
    name, title = "sharpness", "Sharpness over training and test accuracy over lr × B"
    runs = _sgd(t)
    curves = condition_curves(t, runs, "sharp_lambda_max", "step")
    acc = _rows(t, runs, "test_acc")
    if not curves and not len(acc):
        return Skipped(name, title, "needs sharp_lambda_max (walk.sharpness) or test_acc on "
                       "SGD runs (e.g. `sgdwalk sweep flatness`)")
    fig, (a1, a2) = new_figure(1, 2, height=4.6)
    styles, labels = condition_styles(runs), condition_labels(runs)
    for c in ordered(runs, curves):
        x, y = curves[c]
        a1.plot(x, y, color=styles[c]["color"], ls=styles[c]["ls"], lw=1.3, label=labels[c])
    lrs = sorted(runs["lr"].dropna().unique())
    lr_style = {lr: styles[c]["ls"] for c, lr in runs.groupby("condition")["lr"].first().items()}
    for lr in lrs:
        a1.axhline(2 / lr, color=REFERENCE, ls=lr_style.get(lr, LINESTYLES[0]), lw=0.8,
                   alpha=0.7, label=f"2 / lr for lr={lr:g} (black)")
    a1.set_yscale("log")
    a1.set_xlabel("step t (updates)")
    a1.set_ylabel("top Hessian eigenvalue λ_max (nats per unit²)")
    if not curves:
        a1.text(0.5, 0.5, "no sharpness stored", transform=a1.transAxes, ha="center")
    if len(acc):
        last = acc.sort_values("step").groupby("run_id").last()
        grid = last.groupby(["run_lr", "run_batch"])["test_acc"].mean().unstack("run_batch")
        im = a2.imshow(grid.to_numpy(), cmap="viridis", aspect="auto", origin="lower")
        for (i, j), v in np.ndenumerate(grid.to_numpy()):
            if np.isfinite(v):
                a2.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8,
                        color=text_color(im.cmap(im.norm(v))))
        a2.set_xticks(range(grid.shape[1]), [str(int(b)) for b in grid.columns])
        a2.set_yticks(range(grid.shape[0]), [f"{lr:g}" for lr in grid.index])
        fig.colorbar(im, ax=a2, label="final test accuracy (fraction; cell: mean over seeds)")
    outside_legend(fig, [a1], fontsize=7)
    a2.set_xlabel("batch size B (examples)")
    a2.set_ylabel("learning rate")
    a2.set_title("final test accuracy", fontsize=10)
    caption = ("Left: the largest Hessian eigenvalue of the training loss along training "
               "(mean over seeds; colour: batch size, line style: learning rate), with 2/lr "
               "in black in the line style of its learning rate, above which plain GD on a "
               "quadratic would be unstable; right: final test accuracy per learning rate and "
               "batch "
               "size, so flatter runs (lower curves) can be read against better accuracy "
               "(claim C8).")
    return finish(name, fig, title, caption)


def alignment(t: Tables):
    """Median gradient/top-eigenspace alignment against batch size (one line per lr), with
    the distance from init at the last common epoch on a twin axis."""
    name, title = "alignment", "Gradient alignment with the top Hessian eigenvectors"
    runs = _sgd(t)
    rows = _rows(t, runs, "align_topk")
    if not len(rows):
        return Skipped(name, title, "needs align_topk (walk.sharpness; preset curvature or "
                       "higher) on SGD runs (e.g. `sgdwalk sweep alignment`)")
    med = rows.groupby("run_id")["align_topk"].median()
    d = runs.loc[med.index].assign(align=med)
    dist = _rows(t, runs.loc[med.index], "dist_init")
    fig, ax = new_figure(1, 1, height=4.2)
    ax2 = ax.twinx()
    lrs = sorted(d["lr"].unique())
    handles = []
    if len(dist):
        e = int(np.floor(dist.groupby("run_id")["epochs_done"].max().min()))
        at = dist[dist["epochs_done"] <= max(e, 1e-9)].sort_values("step") \
            .groupby("run_id")["dist_init"].last()
        d = d.assign(dist=at.reindex(d.index))
    for i, lr in enumerate(lrs):
        g = d[d["lr"] == lr].groupby("batch_size")
        c, ls = PALETTE[i % len(PALETTE)], LINESTYLES[i % len(LINESTYLES)]
        handles += ax.plot(g["align"].mean(), "o", ls=ls, color=c,
                           label=f"alignment, lr={lr:g}")
        if "dist" in d.columns:
            handles += ax2.plot(g["dist"].mean(), "s", ls=ls, color=c, alpha=0.55,
                                mfc="none", label=f"distance (right axis), lr={lr:g}")
    ax.set_xscale("log", base=2)
    bs = sorted(d["batch_size"].dropna().unique())
    ax.set_xticks(bs, [str(int(b)) for b in bs])
    ax.minorticks_off()
    ax.set_xlabel("batch size B (examples)")
    ax.set_ylabel("median ‖P_k g‖² / ‖g‖² (fraction)")
    ax2.set_ylabel("‖θ − θ_0‖ at the last common epoch (L2)")
    fig.legend(handles=handles, loc="outside right upper", fontsize=7)
    caption = ("Filled circles: the median share of the mini-batch gradient lying in the "
               "top Hessian eigenspace, per batch size; open squares (right axis): distance "
               "from initialisation at a common epoch; one colour and line style per "
               "learning rate; alignment rising while distance falls "
               "with B is claim C11.")
    return finish(name, fig, title, caption)
