"""Figures from tables (never imports torch); `report.write_report` assembles the HTML.

Each figure function takes a `sgdwalk.analysis.Tables` (data frames only, read by
`sgdwalk.store.load`) and returns a `Figure` (matplotlib figure, title, one-sentence caption;
`save_figure` writes NAME.png and NAME.pdf through the store) or a `Skipped` naming the
missing inputs.
"""

from __future__ import annotations

import math

from sgdwalk.analysis.claims_river import STUDY as RIVER_STUDY
from sgdwalk.plots.base import Figure, Skipped, save_figure
from sgdwalk.plots.compare import algorithms, barrier_map
from sgdwalk.plots.lines import line_heatmap, line_run, strip
from sgdwalk.plots.river import river_valley
from sgdwalk.plots.sweep import alignment, distance, height_vs_lr, sharpness

# figure -> the claim whose runs it draws: on a table of several studies (a reproduction)
# each figure shows the runs of the studies meant for that claim
FIGURE_CLAIMS = {"strip": "C1", "line_heatmap": "C1", "height_vs_lr": "C3", "distance": "C4",
                 "barrier_map": "C6", "sharpness": "C8", "algorithms": "C9",
                 "alignment": "C11", "river_valley": "RV1"}


def make_figures(tables) -> list[Figure | Skipped]:
    """Every figure of the report, in reading order: the strip at the first and at the
    last epoch with line curves, the line heat map, height vs lr, distance, barriers,
    sharpness and accuracy, the algorithm overlays, alignment; the river-valley figure when
    the table holds runs of that study. Each draws the runs meant
    for its claim (FIGURE_CLAIMS; `sgdwalk.analysis.scope.meant_for`)."""
    from sgdwalk.analysis.scope import claim_tables

    scoped = {}

    def of(name):
        cid = FIGURE_CLAIMS[name]
        if cid not in scoped:
            scoped[cid] = claim_tables(tables, cid)
        return scoped[cid]

    lines = of("strip")
    out = [strip(lines)]
    found = line_run(lines)
    if found is not None and math.isfinite(lines.runs.loc[found[0], "steps_per_epoch"]):
        # a second strip at the last epoch; a run without epochs (one's own loop) has one
        r, _, curves, _ = found
        spe = lines.runs.loc[r, "steps_per_epoch"]
        last = int(curves.index.max() // spe + 1)
        first = int(curves.index.min() // spe + 1)
        if last != first:
            second = strip(lines, epoch=last)
            if getattr(second, "title", None) != getattr(out[0], "title", None):
                out.append(second)
    for fn in (line_heatmap, height_vs_lr, distance, barrier_map, sharpness, algorithms,
               alignment):
        out.append(fn(of(fn.__name__)))
    if _holds_study(of("river_valley"), RIVER_STUDY):  # only where the study's runs are
        out.append(river_valley(of("river_valley")))
    return out


def _holds_study(tables, studies) -> bool:
    runs = tables.runs
    return "study" in runs.columns and bool(runs["study"].isin(studies).any())


__all__ = [
    "Figure",
    "Skipped",
    "algorithms",
    "alignment",
    "barrier_map",
    "distance",
    "height_vs_lr",
    "line_heatmap",
    "make_figures",
    "river_valley",
    "save_figure",
    "sharpness",
    "strip",
]
