"""Figures across the runs of a sweep: height vs lr, distance vs epochs and iterations,
sharpness and test accuracy over lr x B, alignment vs batch size."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sgdwalk.analysis.frames import Tables, height_column
from sgdwalk.plots.base import LINESTYLES, Skipped, colors, finish, new_figure


def _sgd(t: Tables) -> pd.DataFrame:
    runs = t.runs
    return runs[(runs["algorithm"] == "sgd") & ~runs["diverged"]]


def _rows(t: Tables, runs, column: str) -> pd.DataFrame:
    s = t.steps
    if column not in s.columns:
        rows = s.iloc[:0].assign(**{column: np.zeros(0)})
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
    cs = colors(len(bs))
    for ax, e in zip(axes, shown):
        d = per_run[per_run["epoch"] == e]
        for b, c in zip(bs, cs):
            g = d[d["batch_size"] == b].groupby("lr")[col]
            m, lo, hi = g.mean(), g.min(), g.max()
            if len(m):
                ax.errorbar(m.index, m, yerr=[m - lo, hi - m], fmt="o-", color=c, capsize=3,
                            label=f"B = {int(b)}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (step on the mean loss)")
        ax.set_title(f"epoch {int(e)}", fontsize=10)
        ax.legend(fontsize=8)
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
    first = runs.groupby("condition").first()
    b_of = first["batch_size"].fillna(0)  # 0: not recorded (a run from one's own loop)
    lr_of = first["lr"].fillna(0)
    bs, lrs = sorted(b_of.unique()), sorted(lr_of.unique())
    cs = dict(zip(bs, colors(len(bs))))
    fig, (a1, a2) = new_figure(1, 2, height=4.2, sharey=True)
    for c in by_epoch:
        style = dict(color=cs[b_of[c]], ls=LINESTYLES[lrs.index(lr_of[c]) % len(LINESTYLES)],
                     lw=1.3)
        a1.plot(*by_epoch[c], label=first.loc[c, "label"], **style)
        a2.plot(by_step[c][0] + 1, by_step[c][1], **style)
    a1.set_xlabel("epochs done")
    a2.set_xlabel("iterations (updates)")
    a2.set_xscale("log")
    a1.set_ylabel("‖θ_t − θ_0‖ (L2, parameter units)")
    a1.legend(fontsize=7, ncol=2)
    a1.set_title("at matched epochs", fontsize=10)
    a2.set_title("at matched iterations", fontsize=10)
    caption = ("Distance of the parameters from their initial values, averaged over seeds, "
               "against epochs (left, same data seen) and against updates (right, same "
               "number of steps); colour is the batch size, so darker lines above lighter "
               "ones at equal line style mean smaller batches explore further (claim C4).")
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
    fig, (a1, a2) = new_figure(1, 2, height=4.4)
    first = runs.groupby("condition").first()
    cs = colors(len(curves), "tab10")
    for (c, (x, y)), col in zip(curves.items(), cs):
        a1.plot(x, y, color=col, lw=1.2, label=first.loc[c, "label"])
    for i, lr in enumerate(sorted(first["lr"].dropna().unique())):
        a1.axhline(2 / lr, color="0.3", ls=LINESTYLES[i % 4], lw=0.9, label=f"2 / lr, lr={lr:g}")
    a1.set_yscale("log")
    a1.set_xlabel("step t (updates)")
    a1.set_ylabel("top Hessian eigenvalue λ_max (nats per unit²)")
    a1.legend(fontsize=7, ncol=2)
    if not curves:
        a1.text(0.5, 0.5, "no sharpness stored", transform=a1.transAxes, ha="center")
    if len(acc):
        last = acc.sort_values("step").groupby("run_id").last()
        grid = last.groupby(["run_lr", "run_batch"])["test_acc"].mean().unstack("run_batch")
        im = a2.imshow(grid.to_numpy(), cmap="viridis", aspect="auto", origin="lower")
        for (i, j), v in np.ndenumerate(grid.to_numpy()):
            if np.isfinite(v):
                a2.text(j, i, f"{v:.3f}", ha="center", va="center", color="w", fontsize=8)
        a2.set_xticks(range(grid.shape[1]), [str(int(b)) for b in grid.columns])
        a2.set_yticks(range(grid.shape[0]), [f"{lr:g}" for lr in grid.index])
        fig.colorbar(im, ax=a2, label="final test accuracy (fraction)")
        a2.plot([], [], "s", color="C0", label="cell: mean over seeds")
        a2.legend(fontsize=7, loc="upper right")
    a2.set_xlabel("batch size B (examples)")
    a2.set_ylabel("learning rate")
    a2.set_title("final test accuracy", fontsize=10)
    caption = ("Left: the largest Hessian eigenvalue of the training loss along training "
               "(mean over seeds), with 2/lr marked, above which plain GD on a quadratic "
               "would be unstable; right: final test accuracy per learning rate and batch "
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
    cs = colors(len(lrs), "tab10")
    handles = []
    if len(dist):
        e = int(np.floor(dist.groupby("run_id")["epochs_done"].max().min()))
        at = dist[dist["epochs_done"] <= max(e, 1e-9)].sort_values("step") \
            .groupby("run_id")["dist_init"].last()
        d = d.assign(dist=at.reindex(d.index))
    for lr, c in zip(lrs, cs):
        g = d[d["lr"] == lr].groupby("batch_size")
        handles += ax.plot(g["align"].mean(), "o-", color=c, label=f"alignment, lr={lr:g}")
        if "dist" in d.columns:
            handles += ax2.plot(g["dist"].mean(), "s--", color=c, alpha=0.6,
                                label=f"distance, lr={lr:g}")
    ax.set_xscale("log", base=2)
    bs = sorted(d["batch_size"].dropna().unique())
    ax.set_xticks(bs, [str(int(b)) for b in bs])
    ax.minorticks_off()
    ax.set_xlabel("batch size B (examples)")
    ax.set_ylabel("median ‖P_k g‖² / ‖g‖² (fraction)")
    ax2.set_ylabel("‖θ − θ_0‖ at the last common epoch (L2)")
    ax.legend(handles=handles, fontsize=7, ncol=2, loc="best")
    caption = ("Solid lines: the median share of the mini-batch gradient lying in the top "
               "Hessian eigenspace, per batch size; dashed (right axis): distance from "
               "initialisation at a common epoch; alignment rising while distance falls "
               "with B is claim C11.")
    return finish(name, fig, title, caption)
