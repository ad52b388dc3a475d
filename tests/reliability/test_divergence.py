"""Divergence is a result: a blown-up run is recorded with its step and last finite values,
and the sweep, the claims and the report carry on and show it. A NaN inside a probe is
stored as missing, and the run goes on."""

from __future__ import annotations

import math
import sqlite3

import pytest

from sgdwalk.config import load_config
from sgdwalk.store import RunStore, read_manifest, read_run
from sgdwalk.store.identity import run_dir_name

from .conftest import run_cli, sets

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer

TINY = ["data.probe_size=64", "data.probe_batch=32", "model.widths=[32]", "train.epochs=1",
        "train.progress=false"]


def test_a_blown_up_run_is_recorded_with_its_step_and_last_finite_values(tmp_path):
    overrides = [*TINY, "optim.lr=1e8", "walk.preset=full", "walk.barrier_ks=[1]"]
    proc = run_cli("train", "default", "--out", tmp_path, *sets(overrides))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("diverged: ") and first.endswith(" steps")
    step = int(first.split()[1])
    run_dir = tmp_path / run_dir_name(load_config("default", overrides))
    with RunStore.open(run_dir) as store:
        meta = store.meta()
        rows = store.scalars()
    assert meta["status"] == "diverged" and meta["steps_done"] == meta["diverged_step"] == step
    last = meta["last_finite"]
    assert last["step"] == step - 1 and math.isfinite(last["loss"])
    assert rows.loc[step - 1, "loss"] == last["loss"]
    assert rows.loc[step, "diverged"] == 1 and not math.isfinite(rows.loc[step, "loss"])
    assert rows.loc[0 : step - 1, "loss"].map(math.isfinite).all()  # earlier rows intact
    assert rows.index.max() == step  # nothing logged after the divergence

    again = run_cli("resume", run_dir)  # a result: resuming returns it untouched
    assert again.returncode == 0 and again.stdout.startswith(f"diverged: {step} steps")
    with RunStore.open(run_dir) as store:
        assert store.meta() == meta


DIVERGING = """\
[[variant]]
label = "ok"

[[variant]]
label = "huge"
optim.lr = 1e8
optim.batch_size = 16
model.widths = [64]
"""


def test_sweep_claims_and_report_carry_on_past_a_diverged_run(tmp_path, small_study):
    path = small_study(name="div", seeds=[1], variants=DIVERGING, preset="line")
    sweep = run_cli("sweep", path, "--out", tmp_path, "--no-progress")
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr  # a divergence is a result
    assert "2 runs: 1 completed, 1 diverged" in sweep.stdout
    line = next(x for x in sweep.stdout.splitlines() if x.startswith("  diverged div-huge-s1"))
    step = int(line.rsplit(" ", 1)[1])
    root = tmp_path / "div"
    rows = {r["variant"]: r for r in read_manifest(root)["runs"]}
    assert rows["huge"]["status"] == "diverged" and rows["huge"]["steps"] == step
    assert rows["ok"]["status"] == "completed" and rows["ok"]["steps"] == 12
    huge_id = rows["huge"]["run_id"]

    claims = run_cli("claims", root)
    assert claims.returncode == 0, claims.stderr
    assert f"left out diverged runs: {huge_id} (not in C1" in claims.stdout
    assert any(x.startswith("C1 ") for x in claims.stdout.splitlines())  # decided on "ok"

    report = run_cli("report", root)
    assert report.returncode == 0, report.stderr
    html = (root / "report.html").read_text()
    assert f"<span class='diverged'>diverged at step {step}</span>" in html
    assert html.count("<span class='diverged'>") == 1  # the completed run is not marked


def test_nan_at_extrapolated_line_points_is_stored_as_missing_and_the_run_goes_on(tmp_path):
    """Grid points 1e30 steps away overflow float32 logits: the loss there is NaN."""
    overrides = [*TINY, "walk.preset=line", "walk.line_min=-1e30", "walk.line_max=1e30",
                 "walk.line_points=5", "walk.line_sources=batch,probe"]
    proc = run_cli("train", "default", "--out", tmp_path, *sets(overrides))
    assert proc.returncode == 0 and proc.stdout.startswith("completed: "), proc.stderr
    run_dir = tmp_path / run_dir_name(load_config("default", overrides))
    with RunStore.open(run_dir) as store:
        grid = store.vectors("line_grid").iloc[0].tolist()
        curves = {s: store.vectors(f"line_{s}") for s in ("batch", "probe")}
        steps = int(store.meta()["steps_done"])
    assert grid == [-1e30, -5e29, 0.0, 1.0, 5e29, 1e30]
    for source, curve in curves.items():
        assert curve.index.tolist() == list(range(steps)), source  # every step probed
        far = curve[["v0", "v1", "v4", "v5"]].to_numpy()
        near = curve[["v2", "v3"]].to_numpy()
        assert not (far == far).any(), source  # NaN: missing, inside the stored vector
        assert (near == near).all(), source  # f(0), f(1): measured
    table = read_run(run_dir)
    assert table["line_probe_quad_r2"].isna().all()  # needs every point: missing
    assert table.loc[0:, "line_probe_height"].notna().all()  # from the finite points
    assert table.loc[0:, "loss"].notna().all()
    con = sqlite3.connect(run_dir / "metrics.sqlite")  # missing is SQL NULL, not a number
    try:
        nulls = con.execute("SELECT COUNT(*) FROM scalars WHERE name = 'line_probe_quad_r2' "
                            "AND value IS NULL").fetchone()[0]
    finally:
        con.close()
    assert nulls == steps
