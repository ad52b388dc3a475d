"""Every figure on synthetic tables: saved as PNG and PDF, titled, labelled, with a legend
and a caption; skipped with a reason (never a crash) when its inputs are missing."""

import subprocess
import sys

import numpy as np
import pytest

from sgdwalk.analysis.frames import Tables, height_column
from sgdwalk.analysis.synthetic import run_frame, sweep_tables
from sgdwalk.plots import (
    Figure,
    Skipped,
    algorithms,
    alignment,
    barrier_map,
    distance,
    height_vs_lr,
    line_heatmap,
    make_figures,
    save_figure,
    sharpness,
    strip,
)

FIGURES = [strip, line_heatmap, height_vs_lr, distance, barrier_map, sharpness, algorithms,
           alignment]


@pytest.fixture(scope="module")
def tables():
    return sweep_tables(epochs=3)


def content_axes(fig):
    """Axes that draw data (not colorbars, not hidden)."""
    return [ax for ax in fig.axes if ax.get_visible() and getattr(ax, "_colorbar", None) is None
            and (ax.lines or ax.collections or ax.images or ax.patches)]


def check_figure(f: Figure):
    fig = f.fig
    assert f.title and fig.get_suptitle() == f.title
    assert f.caption.endswith(".") and len(f.caption.split()) >= 15
    axes = content_axes(fig)
    assert axes
    for ax in axes:  # labelled, or sharing the axis with a labelled panel (or twin)
        twins = [a for a in fig.axes if a is not ax and a.bbox.bounds == ax.bbox.bounds]
        xs = [ax, *ax.get_shared_x_axes().get_siblings(ax), *twins]
        ys = [ax, *ax.get_shared_y_axes().get_siblings(ax)]
        assert any(a.get_xlabel() for a in xs), f"{f.name}: an axes without an x label"
        assert any(a.get_ylabel() for a in ys), f"{f.name}: an axes without a y label"
    assert fig.legends or any(ax.get_legend() is not None for ax in fig.axes), \
        f"{f.name}: no legend"
    w, h = fig.get_size_inches()
    assert w >= 8 and h >= 3.5


@pytest.mark.parametrize("fn", FIGURES, ids=lambda f: f.__name__)
def test_figure_is_complete_and_saved_as_png_and_pdf(fn, tables, tmp_path):
    f = fn(tables)
    assert isinstance(f, Figure), getattr(f, "reason", f)
    check_figure(f)
    png, pdf = save_figure(f, tmp_path / "figs")
    assert png.name == f"{f.name}.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.name == f"{f.name}.pdf" and pdf.read_bytes()[:5] == b"%PDF-"
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize("fn", FIGURES, ids=lambda f: f.__name__)
def test_missing_inputs_skip_with_a_reason(fn):
    bare = Tables.from_frames(run_frame("bare", {"loss": np.ones(8)}, steps_per_epoch=4))
    f = fn(bare)
    assert isinstance(f, Skipped) and f.reason and f.title


def test_the_strip_slices_cosines_and_distance_to_its_own_window(tables):
    """The original plotted epoch 1's cosines under every epoch's curves; ours must not."""
    spe = 16  # lr 0.05, B 32 on 512 examples
    for epoch in (1, 3):
        f = strip(tables, run_id="sgd-lr0.05-b32-s0", epoch=epoch, width=10)
        curves, cos, dist = f.fig.axes[:3]
        lo, hi = (epoch - 1) * spe, (epoch - 1) * spe + 10
        for line in cos.lines:
            x = np.asarray(line.get_xdata(), dtype=float)
            if len(x) > 2:  # the cosine series (the zero line spans the axis)
                assert x.min() == lo and x.max() == hi - 1
        (dline,) = dist.lines
        assert np.asarray(dline.get_xdata()).min() == lo + 1
        assert curves.get_xlim() == (lo, hi)
        rows = tables.steps[(tables.steps["run_id"] == "sgd-lr0.05-b32-s0")
                            & tables.steps["step"].between(lo, hi - 1)]
        drawn = [ln for ln in cos.lines if ln.get_label() == "cos_update"][0]
        assert np.allclose(drawn.get_ydata(), rows["cos_update"])


def test_strip_curves_are_drawn_end_to_end_on_their_segments(tables):
    f = strip(tables, run_id="sgd-lr0.1-b64-s0", width=5)
    ax = f.fig.axes[0]
    segs = [np.asarray(ln.get_xdata(), float) for ln in ax.lines if ln.get_gid() == "line-curve"]
    assert [s.min() for s in segs] == [0, 1, 2, 3, 4]
    assert all(s.max() - s.min() == 1 for s in segs)  # step t's curve covers [t, t+1]


def test_a_gd_strip_runs_across_epochs_of_one_step(tables):
    for epoch in (1, 20):  # the last epoch: the window ends there
        f = strip(tables, run_id="gd-lr0.1", epoch=epoch, width=8)
        segs = [ln for ln in f.fig.axes[0].lines if ln.get_gid() == "line-curve"]
        starts = [float(np.min(ln.get_xdata())) for ln in segs]
        assert len(segs) == 8 and np.all(np.diff(starts) == 1)
        assert (starts[0] == 0) if epoch == 1 else (starts[-1] == 19)
        assert "epochs" in f.title


def test_make_figures_draws_everything_on_a_full_sweep_and_skips_on_a_bare_run(tables):
    names = [f.name for f in make_figures(tables)]
    assert names == ["strip", "strip_e3", "line_heatmap", "height_vs_lr", "distance",
                     "barriers", "sharpness", "algorithms", "alignment"]
    bare = Tables.from_frames(run_frame("bare", {"loss": np.ones(8)}, steps_per_epoch=4))
    assert all(isinstance(f, Skipped) for f in make_figures(bare))


def test_a_single_cheap_run_gets_the_figures_it_has_inputs_for():
    n = 40
    rng = np.random.default_rng(0)
    table = run_frame("cheap", {"dist_init": np.sqrt(np.arange(n) + 1.0),
                                "cos_update": rng.normal(-0.2, 0.3, n)}, steps_per_epoch=10)
    got = {f.name: isinstance(f, Figure) for f in make_figures(Tables.from_frames(table))}
    assert got["distance"] and not got["strip"] and not got["height_vs_lr"]


def test_plots_and_analysis_never_import_torch(tmp_path):
    code = (
        "import sys\n"
        "from sgdwalk.analysis.synthetic import sweep_tables, write_runs\n"
        "import sgdwalk.plots, sgdwalk.plots.report, sgdwalk.analysis, sgdwalk.store\n"
        "t = sweep_tables(epochs=2, lrs=(0.1,), batch_sizes=(32,), seeds=1)\n"
        "sgdwalk.plots.make_figures(t)\n"
        f"write_runs(t, {str(tmp_path)!r})\n"
        f"results = sgdwalk.store.load({str(tmp_path)!r})\n"
        "sgdwalk.plots.report.write_report(results, n_boot=20)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "report.html").is_file()


def test_figures_of_a_diverged_only_sweep_do_not_crash():
    t = sweep_tables(epochs=2, lrs=(0.1,), batch_sizes=(32,), seeds=1)
    steps = t.steps.copy()
    steps["status"] = "diverged"
    figs = make_figures(Tables.from_frames(steps, vectors={k: t.vectors(k) for k in
                                                           ("line_probe", "line_grid")}))
    assert all(isinstance(f, (Figure, Skipped)) for f in figs)
    # distances are compared over non-diverged runs only
    assert isinstance(next(f for f in figs if f.name == "distance"), Skipped)


# ---------------------------------------------------------------- readable figures

@pytest.fixture(scope="module")
def twelve():
    """12 SGD conditions (3 lr x 4 B), the most a study's figure shows."""
    return sweep_tables(epochs=2, seeds=1, lrs=(0.05, 0.1, 0.2), batch_sizes=(16, 32, 64, 128))


def draw(fig):
    """Draw `fig` on an Agg canvas (figures are built without pyplot); its renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def clipped(fig) -> list[str]:
    """What is drawn (partly) outside the figure after a draw: each visible axes with its
    tick labels, axis labels and title (named by its labels), each figure legend and
    figure text (named by their first text)."""
    renderer = draw(fig)
    box = fig.bbox.padded(1)  # a pixel of anti-aliasing

    def out(ext) -> bool:
        return not (box.x0 <= ext.x0 and box.y0 <= ext.y0 and ext.x1 <= box.x1
                    and ext.y1 <= box.y1)

    bad = [ax.get_ylabel() or ax.get_xlabel() or ax.get_title() or "an axes"
           for ax in fig.axes if ax.get_visible() and out(ax.get_tightbbox(renderer))]
    bad += [lg.get_texts()[0].get_text() for lg in fig.legends
            if out(lg.get_window_extent(renderer))]
    texts = [*fig.texts, *([fig._suptitle] if fig._suptitle else [])]
    bad += [t.get_text() for t in texts
            if t.get_visible() and t.get_text() and out(t.get_window_extent(renderer))]
    return bad


def legends_over_data(fig) -> list[str]:
    renderer = draw(fig)
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    return [lg.get_texts()[0].get_text() for lg in legends for ax in content_axes(fig)
            if lg.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))]


def test_the_clipping_check_catches_a_label_outside_the_figure():
    from sgdwalk.plots.base import new_figure

    fig, ax = new_figure()
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("inside")
    fig.text(0.98, 0.5, "a label running off the right edge")
    assert clipped(fig) == ["a label running off the right edge"]


@pytest.mark.parametrize("fn", FIGURES, ids=lambda f: f.__name__)
def test_no_text_is_clipped_and_no_legend_covers_data(fn, twelve):
    f = fn(twelve)
    assert isinstance(f, Figure), getattr(f, "reason", f)
    assert clipped(f.fig) == [], f"{f.name}: text outside the figure"
    assert legends_over_data(f.fig) == [], f"{f.name}: a legend over the data"


def test_twelve_conditions_get_twelve_styles_with_lr_and_b_read_apart(twelve):
    from sgdwalk.plots.base import condition_styles

    runs = twelve.runs[twelve.runs["algorithm"] == "sgd"]
    styles = condition_styles(runs)
    first = runs.groupby("condition").first()
    assert len(styles) == len(first) >= 12
    pairs = {(s["color"], str(s["ls"])) for s in styles.values()}
    assert len(pairs) == len(styles)  # no two conditions look alike
    for col in ("batch_size", "lr"):  # one hue per batch size, one style per lr
        key = "color" if col == "batch_size" else "ls"
        for _, group in first.groupby(col):
            assert len({str(styles[c][key]) for c in group.index}) == 1
    by_color = {}
    for s in styles.values():
        by_color[s["color"]] = by_color.get(s["color"], 0) + 1
    assert max(by_color.values()) <= 10


@pytest.mark.parametrize("fn", [distance, sharpness], ids=lambda f: f.__name__)
def test_the_drawn_condition_curves_never_share_colour_and_style(fn, twelve):
    f = fn(twelve)
    ax = f.fig.axes[0]
    drawn = [(ln.get_color(), str(ln.get_linestyle())) for ln in ax.lines
             if ln.get_label().startswith("sgd")]
    assert len(drawn) >= 9 and len(set(drawn)) == len(drawn)
    colours = {}
    for c, _ in drawn:
        colours[c] = colours.get(c, 0) + 1
    assert max(colours.values()) <= 10
    labels = [ln.get_label() for ln in ax.lines if ln.get_label().startswith("sgd")]
    assert not any("#" in lab for lab in labels)


def test_cell_text_colour_follows_the_cell_luminance(twelve):
    from matplotlib.colors import to_rgb

    from sgdwalk.plots.base import text_color

    assert text_color("#FDE725") == "black" and text_color("#440154") == "white"
    assert text_color("white") == "black" and text_color("black") == "white"
    f = sharpness(twelve)
    heat = f.fig.axes[1]
    (image,) = heat.images
    data = image.get_array()
    for text in heat.texts:
        x, y = (int(round(v)) for v in text.get_position())
        cell = image.cmap(image.norm(data[y, x]))
        assert to_rgb(text.get_color()) == to_rgb(text_color(cell))


def test_heat_map_ticks_label_window_starts_with_epochs_or_even_steps(tables):
    from sgdwalk.plots.lines import step_ticks

    steps = np.r_[0:6, 20:26, 40:46]
    assert step_ticks(steps, 16.0) == ([0, 6, 12], ["0\ne1", "20\ne2", "40\ne3"])
    pos, labels = step_ticks(np.arange(37, 300), 16.0)
    vals = [int(v) for v in labels]
    assert len(set(np.diff(vals))) == 1 and pos == [v - 37 for v in vals]
    vec = tables.vectors("line_probe")
    keep = vec["step"].isin(steps)
    sub = Tables.from_frames(tables.steps, vectors={"line_probe": vec[keep],
                                                    "line_grid": tables.vectors("line_grid")})
    f = line_heatmap(sub, run_id="sgd-lr0.05-b32-s0")
    axa = f.fig.axes[1]
    assert [t.get_text() for t in axa.get_xticklabels()] == ["0\ne1", "20\ne2", "40\ne3"]


def test_running_medians_never_bridge_the_gap_between_dense_windows():
    """A series measured in two windows (steps 0-39 and 150-189) gets one running median
    per window: no line is drawn across steps 40-149, where nothing was measured."""
    from sgdwalk.plots.run import curvature

    rng = np.random.default_rng(0)
    kappa = np.full(200, np.nan)
    kappa[0:40] = 1 + rng.random(40)
    kappa[150:190] = 3 + rng.random(40)
    t = Tables.from_frames(run_frame("w", {"curv_kappa": kappa}, steps_per_epoch=10))
    f = curvature(t, "w")
    medians = [np.asarray(ln.get_xdata(), float) for ln in f.fig.axes[0].lines
               if ln.get_linestyle() == "-" and ln.get_marker() in ("None", None, "")]
    assert [(x.min(), x.max()) for x in medians] == [(0, 39), (150, 189)]
    assert all(np.all(np.diff(x) == 1) for x in medians)


def test_height_vs_lr_draws_when_every_seed_has_the_same_height():
    """The mean of three equal heights of 0.1 rounds above their max, so a bar from the
    mean up to the max was negative, which matplotlib refuses."""
    t = sweep_tables(epochs=2, seeds=3)  # a fresh one: its steps are edited below
    col = height_column(t.steps)
    t.steps.loc[t.steps[col].notna(), col] = 0.1  # every run, every step: the same height
    f = height_vs_lr(t)
    assert isinstance(f, Figure)
    check_figure(f)
