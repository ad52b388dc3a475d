"""The HTML report and the `claims` / `report` commands, on run folders written through the
store: a synthetic sweep, a single synthetic run, and a really trained tiny run."""

import base64
import json
import re
import shutil
import subprocess

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
        assert f">C{i}</td>" in claims
    assert "verdict supported" in claims
    n_runs = len([p for p in sweep_dir.iterdir() if p.is_dir()])
    assert text.count("<details>") == n_runs
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
    assert {c["verdict"] for c in data["claims"]} == {"supported"}


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
    assert "not drawn" in text and "<table id='claims'>" in text  # sweep figures skipped


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
    for drawn in ("strip", "line_heatmap", "distance"):  # the line curves, dist_init
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
