"""What every figure shares: the result types, saving, and a few drawing helpers.

A figure function takes a `Tables` (sgdwalk.analysis.frames) and returns a `Figure` (a
matplotlib figure, its title and a one-sentence caption on how to read it) or a `Skipped`
(why it could not be drawn). Figures are built with `matplotlib.figure.Figure` directly,
never pyplot, so no global state is touched and the Agg canvas is used everywhere.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display anywhere; harmless when already set

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
    """A Figure and its axes array (squeezed like pyplot.subplots)."""
    fig = MplFigure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=True, **kw)
    return fig, axes


def finish(name: str, fig: MplFigure, title: str, caption: str) -> Figure:
    fig.suptitle(title, fontsize=12)
    return Figure(name, fig, title, caption)


def _render(fig: MplFigure, fmt: str) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=DPI)
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
    """n distinguishable colours from a sequential map (ends trimmed for contrast)."""
    cm = matplotlib.colormaps[cmap]
    return [cm(x) for x in np.linspace(0.05, 0.85, max(n, 1))]


LINESTYLES = ("-", "--", ":", "-.")
