"""What every figure shares: the result types, saving, and a few drawing helpers.

A figure function takes a `Tables` (sgdwalk.analysis.frames) and returns a `Figure` (a
matplotlib figure, its title and a one-sentence caption on how to read it) or a `Skipped`
(why it could not be drawn). Figures are built with `matplotlib.figure.Figure` directly,
never pyplot, so no global state is touched and the Agg canvas is used everywhere.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display anywhere; harmless when already set

import matplotlib.colors  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure as MplFigure  # noqa: E402

WIDTH = 10.0  # inches; readable on a laptop screen and in the HTML report
DPI = 110


@dataclass
class Figure:
    """A drawn figure: `name` (file stem), matplotlib `fig`, `title`, `caption`."""

    name: str
    fig: MplFigure
    title: str
    caption: str

    def png(self) -> bytes:
        return _render(self.fig, "png")

    def pdf(self) -> bytes:
        return _render(self.fig, "pdf")


@dataclass
class Skipped:
    """A figure that could not be drawn: `name` and the missing inputs in `reason`."""

    name: str
    title: str
    reason: str


def new_figure(rows: int = 1, cols: int = 1, height: float = 4.0, **kw):
    """A Figure and its axes array (squeezed like pyplot.subplots). Constrained layout
    keeps every label and an `outside_legend` inside the figure."""
    fig = MplFigure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, **{"squeeze": True, **kw})
    return fig, axes


def finish(name: str, fig: MplFigure, title: str, caption: str) -> Figure:
    fig.suptitle(title, fontsize=12)
    return Figure(name, fig, title, caption)


def _render(fig: MplFigure, fmt: str) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=DPI, bbox_inches="tight", pad_inches=0.05)
    return buf.getvalue()


def save_figure(figure: Figure, out_dir) -> list[Path]:
    """Write NAME.png and NAME.pdf into `out_dir` (created), atomically; returns both paths."""
    from sgdwalk.store import write_artifact

    paths = []
    for fmt, data in (("png", figure.png()), ("pdf", figure.pdf())):
        path = Path(out_dir) / f"{figure.name}.{fmt}"
        paths.append(write_artifact(path, data, f"figure {path}"))
    return paths


def colors(n: int, cmap: str = "viridis") -> list:
    """n distinguishable colours from a sequential map (ends trimmed for contrast): for an
    ordered quantity (heat maps), never for categories (`PALETTE`)."""
    cm = matplotlib.colormaps[cmap]
    return [cm(x) for x in np.linspace(0.05, 0.85, max(n, 1))]


# Categorical colours, colour-blind safe: Okabe & Ito's seven (without black, kept for
# reference lines; yellow last, it is faint on white), then five of Paul Tol's muted set.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#882255",
           "#117733", "#332288", "#999933", "#44AA99", "#F0E442")
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
REFERENCE = "black"  # reference lines (2/lr, zero): never a palette colour


def condition_styles(runs) -> dict:
    """condition -> {"color", "ls", "marker"} for the conditions of `runs` (a runs table):
    hue for the batch size, line style (and marker) for the learning rate, so that lr and
    B are read separately; conditions sharing lr and B (other algorithms, variants, studies)
    get further hues. Every condition gets its own (colour, style) pair."""
    first = runs.groupby("condition").first()
    b = first["batch_size"].fillna(-1.0)
    lr = first["lr"].fillna(-1.0)
    bs, lrs = sorted(b.unique()), sorted(lr.unique())
    out, taken = {}, set()
    extra = len(bs)
    for c in first.index:
        hue, style = bs.index(b[c]), lrs.index(lr[c])
        while (hue, style) in taken:  # same lr and B: a hue after the batch sizes'
            hue, extra = extra, extra + 1
        taken.add((hue, style))
        out[c] = {"color": PALETTE[hue % len(PALETTE)],
                  "ls": LINESTYLES[style % len(LINESTYLES)],
                  "marker": MARKERS[style % len(MARKERS)]}
    return out


def ordered(runs, conditions) -> list:
    """`conditions` in reading order for a legend: by batch size (hue), then lr (style)."""
    first = runs.groupby("condition").first()
    return sorted(conditions, key=lambda c: (np.nan_to_num(first.loc[c, "batch_size"], nan=-1),
                                             np.nan_to_num(first.loc[c, "lr"], nan=-1),
                                             str(first.loc[c, "label"])))


def condition_labels(runs) -> dict:
    """condition -> its label, saying what it is: the analysis label ("sgd lr=0.1 B=32")
    and, where several conditions share it, what tells them apart (their study, variant
    or the differing config values) instead of the bare condition number ("#12")."""
    first = runs.groupby("condition").first()
    base = first["label"].str.replace(r" #\d+$", "", regex=True)
    out = {}
    for _, group in first.groupby(base):
        cols = [c for c in ("study", "variant") if c in group.columns]
        cols += sorted(c for c in group.columns if "." in c and not c.startswith("walk.")
                       and c not in ("train.seed", "config.name", "optim.lr",
                                     "optim.batch_size", "optim.algorithm"))
        shown = group[cols].map(_shown)
        differ = [c for c in cols if shown[c].nunique() > 1]
        for c in group.index:
            name = base[c]
            if len(group) > 1:
                parts = [shown.loc[c, k] if k in ("study", "variant")
                         else f"{k}={shown.loc[c, k]}" for k in differ[:2]]
                name += f" ({', '.join(parts)})" if parts else f" (condition {c})"
            out[c] = name
    return out


def run_label(t, run_id) -> str:
    """The condition label (`condition_labels`) of one run of the Tables `t`."""
    return condition_labels(t.runs)[t.runs.loc[run_id, "condition"]]


def _shown(value) -> str:
    """A config value as the label shows it ("unset" for a missing one)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "unset"
    return str(value)


def outside_legend(fig: MplFigure, axes=None, ncols: int = 1, fontsize: float = 8, **kw):
    """One legend for the figure, right of the panels (never over the data): the labelled
    artists of `axes` (default: all), each label once."""
    handles, labels = [], []
    for ax in (fig.axes if axes is None else axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels and not lab.startswith("_"):
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=fontsize,
                   ncols=ncols, **kw)


def text_color(rgba) -> str:
    """Black or white, whichever reads on a cell of colour `rgba` (relative luminance,
    WCAG's sRGB formula)."""
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
               for c in matplotlib.colors.to_rgb(rgba))
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.179 else "white"
