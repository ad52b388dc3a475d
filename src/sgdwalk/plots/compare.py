"""Barrier heat maps (floor path vs iterate path) and SGD vs GD vs GD + noise overlays."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import TwoSlopeNorm

from sgdwalk.analysis.claims_barrier import barrier_ks, eps_source
from sgdwalk.analysis.frames import Tables, has_data, height_column
from sgdwalk.plots.base import (
    PALETTE,
    Skipped,
    condition_labels,
    finish,
    new_figure,
    outside_legend,
    run_label,
)
from sgdwalk.plots.lines import step_ticks


def barrier_map(t: Tables, run_id: str | None = None):
    """Barrier height over (step t, gap k) on the valley-floor path and on the iterate
    path of one run (default: the non-diverged SGD run with barriers and the largest lr/B)."""
    name, title = "barriers", "Barriers on the valley floor vs on the iterate path"
    ks = [k for k in barrier_ks(t.steps) if k in barrier_ks(t.steps, "iter")]
    runs = t.runs[~t.runs["diverged"]]
    have = [r for r in runs.index if ks and has_data(t.steps, f"barrier_floor_k{ks[0]}", [r])]
    if run_id is None and have:
        order = runs.loc[have].assign(ratio=runs["lr"] / runs["batch_size"])
        run_id = order.sort_values(["ratio", "lr"], ascending=False).index[0]
    if run_id is None:
        return Skipped(name, title, "needs barrier_floor_k* and barrier_iter_k* (walk.barrier; "
                       "walk.preset=full; e.g. `sgdwalk sweep barriers`)")
    rows = t.steps[(t.steps["run_id"] == run_id) & (t.steps["step"] >= 0)]
    src = eps_source(t, [run_id])
    eps = rows[f"line_{src}_eps"].to_numpy(float) if src else np.zeros(len(rows))
    mats = {p: rows[[f"barrier_{p}_k{k}" for k in ks]].to_numpy(float).T
            for p in ("floor", "iter")}
    keep = np.isfinite(mats["floor"]).any(axis=0) | np.isfinite(mats["iter"]).any(axis=0)
    steps = rows["step"].to_numpy()[keep]
    eps = eps[keep]
    mats = {p: m[:, keep] for p, m in mats.items()}
    vmax = max(np.nanmax(np.abs(m)) if np.isfinite(m).any() else 1e-9 for m in mats.values())
    norm = TwoSlopeNorm(0.0, -vmax, vmax)
    fig, axes = new_figure(2, 1, height=5.5, sharex=True)
    for ax, (p, m) in zip(axes, mats.items()):
        im = ax.pcolormesh(np.arange(len(steps) + 1) - 0.5, np.arange(len(ks) + 1) - 0.5, m,
                           cmap="RdBu_r", norm=norm, shading="flat")
        jj, ii = np.nonzero(m > eps[None, :])
        ax.plot(ii, jj, "k.", ms=3, label="barrier above the noise eps")
        ax.set_yticks(range(len(ks)), [str(k) for k in ks])
        ax.set_ylabel("gap k (steps)")
        path = "valley floor: floor_{t−k} → floor_t" if p == "floor" \
            else "iterates: θ_{t−k} → θ_t"
        share = np.nanmean(np.where(np.isfinite(m), m > eps[None, :], np.nan))
        ax.set_title(f"{path}  (share above noise: {share:.2f})", fontsize=10)
    fig.colorbar(im, ax=axes, label="max loss on the segment − larger end (nats)")
    outside_legend(fig, axes)
    ticks, labels = step_ticks(steps, float(t.runs.loc[run_id, "steps_per_epoch"]))
    axes[1].set_xticks(ticks, labels)
    axes[1].set_xlabel("step t (and epoch; columns: steps with barrier values)")
    title = f"{title}: {run_label(t, run_id)}"
    caption = ("Red cells are segments whose loss rises above both ends (a barrier), blue "
               "ones dip below them; dots mark barriers larger than the evaluation noise, "
               "so many dots on top and few below mean the floor has barriers that SGD's "
               "own path does not meet (claims C6, C7).")
    return finish(name, fig, title, caption)


def algorithms(t: Tables):
    """SGD vs full-batch GD vs GD + isotropic noise against updates: distance from init,
    training loss, test accuracy and height above the floor."""
    name, title = "algorithms", "SGD vs GD vs GD + isotropic noise"
    runs = t.runs[~t.runs["diverged"]]
    algs = [a for a in ("sgd", "gd", "gd_noise") if (runs["algorithm"] == a).any()]
    if len(algs) < 2:
        return Skipped(name, title, "needs runs of >= 2 of optim.algorithm = sgd, gd, "
                       "gd_noise (e.g. `sgdwalk sweep noise`)")
    chosen = _comparable(runs, algs)
    hcol = height_column(t.steps, chosen)
    panels = [("dist_init", "‖θ − θ_0‖ (L2)"), ("train_loss", "train loss (nats)"),
              ("test_acc", "test accuracy (fraction)")]
    if hcol:
        panels.append((hcol, "height above the floor (nats,\nrunning median of 9)"))
    fig, axes = new_figure(2, 2, height=6.5, sharex=True)
    axes = axes.ravel()
    labels = condition_labels(t.runs)
    colors = {"sgd": PALETTE[0], "gd": PALETTE[1], "gd_noise": PALETTE[2]}
    for ax, (col, ylabel) in zip(axes, panels):
        for r in chosen:
            if col not in t.steps.columns:
                break
            rows = t.steps[(t.steps["run_id"] == r) & np.isfinite(t.steps[col])]
            if not len(rows):
                continue
            x, y = rows["step"].to_numpy() + 1, rows[col]
            style = dict(color=colors[runs.loc[r, "algorithm"]],
                         label=labels[runs.loc[r, "condition"]])
            if col == hcol:
                y = y.rolling(9, center=True, min_periods=1).median()
            if col in ("train_loss", "test_acc"):
                ax.plot(x, y, "o-", ms=3, lw=1, **style)
            else:
                ax.plot(x, y, lw=1.2, **style)
        ax.set_ylabel(ylabel)
    for ax in axes[2:]:
        ax.set_xlabel("updates (matched iterations; 0: initialisation)")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    outside_legend(fig, axes[:len(panels)], fontsize=7)
    caption = ("One line per algorithm at the same learning rate (the SGD run whose batch size "
               "the GD + noise run matched), against the number of updates: if isotropic "
               "noise of matched size reproduced SGD, the green (GD + noise) and blue (SGD) lines "
               "would overlap "
               "in every panel (claim C9).")
    return finish(name, fig, title, caption)


def _comparable(runs, algs) -> list[str]:
    """One run per algorithm: GD + noise (or GD) first, then runs of the other algorithms
    with its lr, SGD preferring batch size = its optim.noise_batch."""
    ref = runs[runs["algorithm"] == ("gd_noise" if "gd_noise" in algs else "gd")].iloc[0]
    out = [ref.name]
    for a in algs:
        if a == ref["algorithm"]:
            continue
        cand = runs[runs["algorithm"] == a]
        same = cand[np.isclose(cand["lr"], ref["lr"])]
        cand = same if len(same) else cand
        if a == "sgd" and "optim.noise_batch" in runs.columns:
            hit = cand[cand["batch_size"] == ref["optim.noise_batch"]]
            cand = hit if len(hit) else cand
        out.append(cand.index[0])
    return out
