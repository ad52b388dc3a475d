"""The HTML report and the `claims` / `report` commands, on run folders written through the
store: a synthetic sweep, a single synthetic run, and a really trained tiny run."""

import base64
import json
import re
import shutil
import subprocess

import pandas as pd
import pytest

from sgdwalk.analysis import Tables
from sgdwalk.analysis.synthetic import sweep_tables, write_runs
from sgdwalk.cli import main
from sgdwalk.plots import Figure, make_figures
from sgdwalk.plots.report import write_report
from sgdwalk.store import load

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer

N_BOOT = 100
IMG = re.compile(r"<img src='data:image/png;base64,([A-Za-z0-9+/=]+)'")


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    write_runs(sweep_tables(epochs=3, lrs=(0.1, 0.2), batch_sizes=(32, 64)), root)
    return root


@pytest.fixture(scope="module")
def report(sweep_dir):
    return write_report(load(sweep_dir), n_boot=N_BOOT)


def test_report_is_one_self_contained_file(report, sweep_dir):
    assert report == sweep_dir / "report.html"
    text = report.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    lower = text.lower()
    for external in ("<script", "<link", "@import", "url(", "src='http", 'src="http',
                     "href='http", 'href="http', "<iframe"):
        assert external not in lower, external
    images = IMG.findall(text)
    n_figures = sum(isinstance(f, Figure) for f in make_figures(Tables(load(sweep_dir))))
    assert len(images) == n_figures == text.count("<img") == 9
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert text.count("<figcaption>") == n_figures


def test_report_holds_claims_configs_versions_and_statuses(report, sweep_dir):
    text = report.read_text(encoding="utf-8")
    claims = text[text.index("<table id='claims'>"):]
    claims = claims[:claims.index("</table>")]
    for i in range(1, 13):
        assert f"<a href='#claim-C{i}'>C{i}</a></td>" in claims
    assert "verdict supported" in claims
    n_runs = len([p for p in sweep_dir.iterdir() if p.is_dir()])
    assert text.count("<details id='config-") == n_runs
    assert "[optim]" in text and "lr = 0.2" in text  # the configs, verbatim
    versions = text[text.index("<table id='versions'>"):]
    assert "git_revision" in versions and "numpy" in versions
    runs = text[text.index("<table id='runs'>"):]
    assert "<span class='diverged'>diverged at step 20</span>" in runs
    assert "completed" in runs


def test_claims_command_on_a_sweep_prints_the_table_and_writes_json(sweep_dir, capsys):
    assert main(["claims", str(sweep_dir), "--json", str(sweep_dir / "c.json")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("claim verdict")
    assert "C12" in out and f"claims written to: {sweep_dir / 'c.json'}" in out
    data = json.loads((sweep_dir / "c.json").read_text())
    paper = {f"C{i}" for i in range(1, 13)}
    assert {c["verdict"] for c in data["claims"] if c["id"] in paper} == {"supported"}
    # the field's claims (edge of stability, catapult) need full-batch GD studies
    assert {c["verdict"] for c in data["claims"] if c["id"] not in paper} == {"missing"}


def test_claims_and_report_commands_on_a_single_run(tmp_path, capsys):
    t = sweep_tables(epochs=2, lrs=(0.1,), batch_sizes=(32,), seeds=1)
    (run,) = [p for p in write_runs(t, tmp_path) if p.name == "sgd-lr0.1-b32-s0"]
    assert main(["claims", str(run)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^C1 +(supported|contradicted|inconclusive) ", out, re.M)
    assert "C3   needs" in out  # a sweep claim, listed with what it needs
    assert (run / "claims.json").is_file()
    assert main(["report", str(run), "--out", str(tmp_path / "out" / "r.html")]) == 0
    assert "report: " in capsys.readouterr().out
    text = (tmp_path / "out" / "r.html").read_text()
    assert "<table id='claims'>" in text
    assert "height_vs_lr" not in drawn_figures(text)  # sweep figures: not drawn, no panel


def test_report_on_a_really_trained_run(tmp_path, tiny_config, capsys):
    from sgdwalk.experiment import train

    result = train(tiny_config(**{"train.epochs": 1, "walk.preset": "line"}), tmp_path)
    assert main(["report", str(result.run_dir)]) == 0
    text = (result.run_dir / "report.html").read_text()
    assert "<table id='claims'>" in text and text.count("<img") >= 2  # strip, distance, ...
    versions = text[text.index("<table id='versions'>"):]
    import torch

    assert torch.__version__ in versions


def test_report_of_a_run_written_from_ones_own_loop(tmp_path, capsys):
    """Issue 12: a RunStore sink with only the walk's values (no epochs, no preset config)
    gave `ValueError: cannot convert float NaN to integer`; now what it stored is drawn."""
    import torch

    from sgdwalk import Walk
    from sgdwalk.store import RunStore

    torch.manual_seed(0)
    x = torch.randn(128, 8)
    y = (x[:, 0] > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    run = tmp_path / "own" / "run"
    with RunStore.create(run, "", {}) as store:
        walk = Walk(model, probes="line", probe_set=(x[:64], y[:64]), sink=store.log)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for i in range(12):
            walk.step(optimizer, x[8 * i:8 * i + 32], y[8 * i:8 * i + 32])
    assert main(["report", str(run)]) == 0
    text = (run / "report.html").read_text()
    for drawn in ("strip", "line_heatmap", "distance_run"):  # the line curves, dist_init
        assert f"<figure id='fig-{drawn}'>" in text
    assert main(["claims", str(run)]) == 0
    assert re.search(r"^C2 +(supported|contradicted|inconclusive) ", capsys.readouterr().out,
                     re.M)


def test_a_copied_and_an_unfinished_run_change_no_claim_and_are_noted(tmp_path, capsys):
    """Issue 16: a run folder copied into a sweep root crashed claims and report, two copies
    doubled its steps, an unfinished run counted as a full one. Now: the same claims as the
    clean sweep, and a note for each."""
    t = sweep_tables(epochs=2, lrs=(0.1, 0.2), batch_sizes=(32, 64), seeds=1)
    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    write_runs(t, clean)
    runs = write_runs(t, dirty)
    shutil.copytree(runs[0], tmp_path / "dirty" / "nested" / runs[0].name)  # a copy
    unfinished = sweep_tables(epochs=2, lrs=(0.4,), batch_sizes=(32,), seeds=1)
    write_runs(unfinished.subset(["sgd-lr0.4-b32-s0"]), tmp_path / "partial")
    shutil.move(tmp_path / "partial" / "sgd-lr0.4-b32-s0", dirty / "sgd-lr0.4-b32-s0")
    meta = dirty / "sgd-lr0.4-b32-s0" / "meta.json"
    meta.write_text(meta.read_text().replace('"completed"', '"running"'))
    for root in (clean, dirty):
        assert main(["claims", str(root), "--json", str(root / "c.json")]) == 0
        assert main(["report", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"note: run {runs[0].name} found 2 times: read {runs[0].name}, left out " \
           f"nested/{runs[0].name}" in out
    assert "note: left out unfinished runs: sgd-lr0.4-b32-s0 (running, " in out
    got = json.loads((dirty / "c.json").read_text())["claims"]
    assert got == json.loads((clean / "c.json").read_text())["claims"]
    assert "left out unfinished runs" in (dirty / "report.html").read_text()


def test_commands_on_a_folder_without_runs_fail_with_one_line(tmp_path, capsys):
    assert main(["claims", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected a run folder or a folder of runs" in err[0]


# ---------------------------------------------------------------- headless browser

PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var claims = document.getElementById('claims');
  var d = document.createElement('div');
  d.id = 'figcheck';
  d.textContent = 'images ' + ok + '/' + imgs.length + ' claims-rows ' +
    (claims ? claims.rows.length : 0);
  document.body.appendChild(d);
});
</script>"""


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.browser
def test_report_renders_in_headless_chromium(report, tmp_path):
    exe = find_chromium()
    if exe is None:
        pytest.skip("no headless Chromium on PATH (Debian: apt-get install chromium)")
    # the report itself has no script: a copy with a probe appended reports what loaded
    page = tmp_path / "probe.html"
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                    encoding="utf-8")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
           "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    found = re.search(r'<div id="figcheck">images (\d+)/(\d+) claims-rows (\d+)</div>',
                      proc.stdout)
    assert found, f"no probe result in the DOM (exit {proc.returncode}): {proc.stderr[-2000:]}"
    ok, total, rows = map(int, found.groups())
    assert total == 9 and ok == total, "every figure decoded with a non-zero width"
    assert rows >= 13  # the header and at least one row per claim


# ---------------------------------------------------------------- single runs

FIGURE_ID = re.compile(r"<figure id='fig-([\w.-]+)'>")


def drawn_figures(text):
    return FIGURE_ID.findall(text)


def test_train_says_that_the_report_exists_and_a_cheap_run_shows_its_walk(tmp_path, capsys):
    """Issue 14: the report of a `default` run with the cheap walk drew a distance plot,
    an empty sharpness panel and a one-cell heat map; `train` never named `report`."""
    tiny = ("data.probe_size=64", "model.widths=[16]", "optim.batch_size=64",
            "train.epochs=2", "train.progress=false", "walk.preset=cheap")
    sets = [a for kv in tiny for a in ("--set", kv)]
    assert main(["train", "default", "--out", str(tmp_path), *sets]) == 0
    out = capsys.readouterr().out.splitlines()
    run = out[-1].removeprefix("run directory: ")
    assert f"see it: sgdwalk report {run}  (HTML page of what the run stored)" in out
    assert main(["report", run]) == 0
    text = (tmp_path / run / "report.html").read_text()
    assert drawn_figures(text) == ["training", "cosines", "distance_run", "layers"]
    assert "sharpness" not in drawn_figures(text) and text.count("<img") == 4
    assert "learning rate = 0.1 at every step" in text  # a constant: named, not drawn


def test_a_line_run_shows_its_strips_heat_map_and_floors(tmp_path, tiny_config):
    from sgdwalk.experiment import train

    result = train(tiny_config(**{"walk.preset": "line", "train.epochs": 2}), tmp_path)
    text = write_report(load(result.run_dir), n_boot=N_BOOT).read_text()
    figs = drawn_figures(text)
    assert figs[:4] == ["training", "strip_e1", "strip_e2", "line_heatmap"]
    assert {"floors", "cosines", "distance_run", "layers"} <= set(figs)


def test_every_panel_of_a_single_run_holds_data(tmp_path, tiny_config):
    """No empty panel: every visible axes of every run figure draws finite data."""
    import numpy as np

    from sgdwalk.experiment import train
    from sgdwalk.plots.run import run_figures

    result = train(tiny_config(**{"walk.preset": "curvature", "train.epochs": 1}), tmp_path)
    t = Tables(load(result.run_dir))
    figs = run_figures(t)
    assert "curvature" in [f.name for f in figs]
    for f in figs:
        for ax in f.fig.axes:
            if not ax.get_visible() or getattr(ax, "_colorbar", None) is not None:
                continue
            data = [np.asarray(ln.get_ydata(), float) for ln in ax.lines
                    if not ln.get_label().startswith(("2", "a* = 1", "alpha 0", "cosine 0"))]
            data += [np.asarray(c.get_array(), float).ravel() for c in ax.collections
                     if c.get_array() is not None]
            assert any(np.isfinite(d).any() for d in data), f"{f.name}: an empty panel"


def test_windows_of_dense_line_curves_get_one_strip_each(tmp_path):
    """A run with line curves only in some windows (a trajectory study's dense epochs)
    draws one strip per window, named by its order."""
    from sgdwalk.plots.run import window_strips

    t = sweep_tables(epochs=3, lrs=(0.1,), batch_sizes=(32,), seeds=1).subset(
        ["sgd-lr0.1-b32-s0"])
    vec = t.vectors("line_probe")
    keep = vec["step"].isin(list(range(0, 6)) + list(range(20, 26)) + list(range(40, 46)))
    sub = Tables.from_frames(t.steps, vectors={"line_probe": vec[keep],
                                               "line_grid": t.vectors("line_grid")})
    strips = window_strips(sub, "sgd-lr0.1-b32-s0")
    assert [f.name for f in strips] == ["strip_w1", "strip_w2", "strip_w3"]
    assert [f.title.rsplit(", ", 1)[1] for f in strips] == ["epoch 1", "epoch 2", "epoch 3"]


# ---------------------------------------------------------------- claims and navigation

@pytest.fixture(scope="module")
def noise_study():
    """A folder whose study (noise) is meant for C9 only: C9 decided, the others MISSING
    with the study that would decide them."""
    t = sweep_tables(epochs=2, lrs=(0.1, 0.2), batch_sizes=(32, 64), seeds=1)
    steps = t.steps.assign(study="noise", scale="cpu")
    return Tables.from_frames(steps, vectors={k: t.vectors(k) for k in t.loaded_vectors()},
                              study_claims={"noise": ("C9",)})


@pytest.fixture(scope="module")
def noise_page(noise_study):
    from sgdwalk.analysis.decide import decide_claims
    from sgdwalk.plots.report import render_report

    claims = decide_claims(noise_study, n_boot=N_BOOT)
    return claims, render_report(noise_study, claims=claims)


def section(text, cid):
    start = text.index(f"<section class='claim' id='claim-{cid}'>")
    return text[start:text.index("</section>", start)]


def test_the_summary_is_generated_from_the_verdicts(noise_page):
    claims, text = noise_page
    summary = re.search(r"<p id='summary-text'>(.*?)</p>", text, re.S).group(1)
    by = {v: [c.id for c in claims if c.verdict == v] for v in
          ("supported", "contradicted", "inconclusive", "missing")}
    assert f"{len(by['supported'])} of {len(claims)} claims reproduced" in summary
    assert f"{len(by['missing'])} not tested ({', '.join(by['missing'])})" in summary
    assert "scale cpu" in summary and "studies noise" in summary
    assert "`sgdwalk sweep trajectory`" in summary  # what would decide C1
    assert "CPU-scale runs" in summary
    assert len(by["missing"]) == len(claims) - 1


def test_each_claim_has_its_parts_rule_evidence_scope_and_links(noise_page):
    claims, text = noise_page
    c9 = next(c for c in claims if c.id == "C9")
    part = section(text, "C9")
    assert html_escape(c9.evidence) in part and html_escape(c9.rule) in part
    assert part.count("<tr><td>") == len(c9.parts) >= 2  # a row per part
    for p in c9.parts:
        assert f"<td>{html_escape(p.statistic)}</td><td><span class='verdict {p.verdict}'>" \
            in part
    assert f"Scope:</strong> decided by the runs of the studies meant for C9 here: noise " \
           f"({len(c9.runs)} runs used)" in part
    assert "<a href='#fig-algorithms'>algorithms</a>" in part
    for r in c9.runs:  # each run that decided it links to its row, named by study/folder
        assert f"<a href='#run-{r}'>noise/" in part or f"<a href='#run-{r}'>" in part
        assert f"<tr id='run-{r}'>" in text
    c1 = section(text, "C1")
    assert "Scope:</strong> MISSING: needs runs of a study meant for C1" in c1
    assert "`sgdwalk sweep trajectory`" in c1


def html_escape(s):
    import html

    return html.escape(s)


def test_a_contents_list_links_every_claim_figure_and_section(noise_page):
    claims, text = noise_page
    toc = text[text.index("<nav id='toc'>"):text.index("</nav>")]
    for c in claims:
        assert f"<a href='#claim-{c.id}'>" in toc and f"id='claim-{c.id}'" in text
    for fig in drawn_figures(text):
        assert f"<a href='#fig-{fig}'>" in toc
    for anchor in ("summary", "claims-section", "figures", "runs-section", "configs",
                   "versions-section"):
        assert f"<a href='#{anchor}'>" in toc and f"id='{anchor}'" in text
    hrefs = set(re.findall(r"href='#([^']+)'", text))
    ids = set(re.findall(r"id='([^']+)'", text))
    assert hrefs <= ids  # no link to nowhere


def test_conditions_sharing_a_label_say_what_tells_them_apart():
    from sgdwalk.plots.base import condition_labels

    t = sweep_tables(epochs=2, lrs=(0.1,), batch_sizes=(32,), seeds=1)
    one = t.steps[t.steps["run_id"] == "sgd-lr0.1-b32-s0"]
    two = one.assign(run_id="other", **{"optim.weight_decay": 5e-4})
    both = Tables.from_frames(pd.concat([one, two], ignore_index=True))
    assert sorted(both.runs["label"]) == ["sgd lr=0.1 B=32 #0", "sgd lr=0.1 B=32 #1"]
    labels = condition_labels(both.runs)
    assert sorted(labels.values()) == ["sgd lr=0.1 B=32 (optim.weight_decay=0.0005)",
                                       "sgd lr=0.1 B=32 (optim.weight_decay=unset)"]
