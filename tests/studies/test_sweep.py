"""Sweeps end to end: every shipped study at tiny size, skipping and resuming, divergence and
failures as results, the manifest, the tables, and the CLI."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import sgdwalk
from sgdwalk.cli import main
from sgdwalk.probes.registry import registered
from sgdwalk.store import RunStore, find_runs, read_manifest
from sgdwalk.studies import load_study, run_sweep

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer

# What each study must record for its claims, by probe family (None: the training loop).
NEEDS = {
    "trajectory": {None: ["loss"], "trajectory": ["cos_update", "cos_grad", "dist_init"],
                   "economy": ["econ_height"],
                   "line": ["line_probe_interior", "line_probe_convex", "line_probe_height",
                            "line_batch_height", "line_probe_eps"],
                   "curvature": ["curv_lr_kappa"]},
    "lr-batch": {"trajectory": ["dist_init", "path_length"], "economy": ["econ_height"],
                 "line": ["line_probe_height", "line_probe_interior"],
                 "noise": ["noise_trace"]},
    "barriers": {"trajectory": ["dist_init", "path_length"],
                 "line": ["line_probe_crossing", "line_probe_floor_loss"],
                 "barrier": ["barrier_floor_k1", "barrier_iter_k1", "floor_change"]},
    "flatness": {None: ["test_acc"], "sharpness": ["sharp_lambda_max", "sharp_lr_lambda"]},
    "noise": {None: ["test_acc"], "trajectory": ["dist_init"], "economy": ["econ_height"],
              "line": ["line_probe_height"]},
    "alignment": {"trajectory": ["dist_init"],
                  "sharpness": ["align_top1", "align_topk", "sharp_lambda_max"]},
}


def needed(study: str) -> list[str]:
    """The metric names of NEEDS[study] whose probe family exists in this checkout."""
    families = {spec.name for spec in registered()}
    return [name for family, names in NEEDS[study].items()
            if family is None or family in families for name in names]


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_each_study_runs_tiny_and_records_what_its_claims_need(name, tiny, tmp_path):
    study = load_study(name, scale="cpu", overrides=tiny(name))
    result = run_sweep(study, tmp_path, progress=False)
    assert result.ok, result.summary()
    assert [r.status for r in result.records] == ["completed"] * len(study)
    assert result.root == tmp_path / name
    table = sgdwalk.load(result.root).table()
    assert table["run_id"].nunique() == len(study) >= 2
    assert set(table["study"]) == {name} and set(table["scale"]) == {"cpu"}
    assert set(table["variant"]) == {e.variant for e in study.entries}
    assert table.groupby("run_id")["step"].max().eq(5).all()  # train.max_steps=6
    for metric in needed(name):
        assert metric in table.columns, f"{name}: no {metric}"
        finite = table[np.isfinite(table[metric])].groupby("run_id").size()
        assert len(finite) == len(study), f"{name}: {metric} missing in some runs"


def test_trajectory_measures_sgd_and_gd_on_both_axes(tiny, tmp_path):
    result = run_sweep(load_study("trajectory", overrides=tiny("trajectory")), tmp_path,
                       progress=False)
    table = sgdwalk.load(result.root).table()
    spe = table.groupby("variant")["steps_per_epoch"].first()
    assert spe["gd"] == 1 and spe["sgd"] == 1257 // 32
    gd = table[table["variant"] == "gd"]
    assert gd["epochs_done"].max() == 6.0 and gd["optim.algorithm"].eq("gd").all()


def test_noise_study_adds_noise_only_to_the_gd_noise_variants(tiny, tmp_path):
    result = run_sweep(load_study("noise", overrides=tiny("noise")), tmp_path, progress=False)
    table = sgdwalk.load(result.root).table()
    std = table[table["step"] == -1].set_index("variant")["noise_std"]
    assert std["gd-matched"] > 0 and std["gd-original"] > 0
    assert np.isnan(std["sgd"]) and np.isnan(std["gd"])
    # SGD and the GD variants take the same number of updates
    assert table.groupby("variant")["step"].max().eq(5).all()


def test_a_finished_sweep_is_skipped_and_meta_records_study_and_variant(small_study, tmp_path):
    study = load_study(small_study())
    first = run_sweep(study, tmp_path, progress=False)
    assert first.ok and not any(r.skipped for r in first.records)
    metas = {}
    for path in find_runs(first.root):
        with RunStore.open(path) as run:
            metas[path] = run.meta()
    assert {m["study"] for m in metas.values()} == {"small"}
    assert {m["variant"] for m in metas.values()} == {"base"}
    assert sorted(m["point"]["train.seed"] for m in metas.values()) == [1, 2]
    again = run_sweep(study, tmp_path, progress=False)
    assert again.ok and all(r.skipped for r in again.records)
    for path, meta in metas.items():  # untouched: not trained again, meta not rewritten
        with RunStore.open(path) as run:
            assert run.meta() == meta
    assert "2 already done" in again.summary()


def test_a_diverging_run_is_recorded_and_the_sweep_goes_on(small_study, tmp_path):
    variants = ('[[variant]]\nlabel = "ok"\n\n[[variant]]\nlabel = "huge"\n'
                "optim.lr = 1e8\noptim.batch_size = 16\nmodel.widths = [64]\n")
    study = load_study(small_study(seeds=[1], steps=40, variants=variants))
    result = run_sweep(study, tmp_path, progress=False)
    status = {r.variant: r.status for r in result.records}
    assert status == {"ok": "completed", "huge": "diverged"}
    assert result.ok  # a divergence is a result, not a failure
    assert "diverged small-huge-s1 at step" in result.summary()
    manifest = read_manifest(result.root)
    assert [r["status"] for r in manifest["runs"]] == ["completed", "diverged"]
    table = sgdwalk.load(result.root).table()
    huge = table[table["variant"] == "huge"]
    assert set(huge["status"]) == {"diverged"} and huge["diverged"].max() == 1
    assert not np.isfinite(huge["loss"].iloc[-1])


def test_a_failing_run_is_recorded_with_its_error_and_the_sweep_goes_on(small_study,
                                                                        tmp_path):
    missing = tmp_path / "no-mnist-here"
    variants = ('[[variant]]\nlabel = "broken"\ndata.name = "mnist"\n'
                f'data.root = "{missing}"\n\n[[variant]]\nlabel = "fine"\n')
    study = load_study(small_study(seeds=[1], variants=variants))
    result = run_sweep(study, tmp_path / "out", progress=False)
    broken, fine = result.records
    assert broken.status == "failed" and fine.status == "completed"
    assert str(missing) in broken.error and "\n" not in broken.error
    assert not result.ok
    assert f"failed   small-broken-s1: {broken.error}" in result.summary()
    rows = read_manifest(result.root)["runs"]
    assert rows[0]["status"] == "failed" and rows[0]["error"] == broken.error


def test_load_columns_and_epoch_axis(small_study, tmp_path):
    study = load_study(small_study(steps=45), overrides=["optim.batch_size=32",
                                                            "train.epochs=2"])
    run_sweep(study, tmp_path, progress=False)
    table = sgdwalk.load(tmp_path).table()  # a folder of study folders works too
    assert list(table.columns[:7]) == ["run_id", "run_dir", "status", "study", "variant",
                                       "scale", "steps_per_epoch"]
    assert {"optim.lr", "optim.batch_size", "train.seed", "config.name"} <= set(table.columns)
    assert table.columns.get_loc("epochs_done") == table.columns.get_loc("step") + 1
    assert table["steps_per_epoch"].eq(1257 // 32).all()
    np.testing.assert_array_equal(table["epochs_done"], (table["step"] + 1) / 39)
    ends = table.dropna(subset=["epoch"])
    np.testing.assert_array_equal(ends["epochs_done"], ends["epoch"])  # 0 at -1, 1 at 38
    assert table.groupby("run_id").size().eq(46).all()  # theta_0 row + 45 updates
    one = sgdwalk.load(find_runs(tmp_path)[0]).table()  # one run folder
    assert one["run_id"].nunique() == 1 and one["study"].iloc[0] == "small"
    layers = sgdwalk.load_vectors(tmp_path / "small", "dist_init_layers")
    assert list(layers.columns[:3]) == ["run_id", "step", "v0"]
    assert len(layers) == 2 * 45 and set(layers["run_id"]) == set(table["run_id"])
    assert sgdwalk.load_vectors(tmp_path, "no_such_vector").empty


def test_cli_sweep_prints_the_summary_and_exits_by_outcome(small_study, tmp_path, capsys):
    path = small_study()
    assert main(["sweep", str(path), "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "small (cpu, local): 2 runs: 2 completed" in out
    assert f"sweep directory: {tmp_path / 'small'}" in out
    assert main(["sweep", str(path), "--out", str(tmp_path), "--set", "optim.lrr=1"]) == 2
    assert "optim.lrr: expected one of the keys" in capsys.readouterr().err
    assert main(["presets"]) == 0
    listed = capsys.readouterr().out
    assert "studies" in listed and "lr-batch" in listed and "trajectory" in listed


def test_cli_bad_study_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sgdwalk.cli", "sweep", "nope", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        proc.stderr.strip()] and "expected one of alignment" in proc.stderr


@pytest.mark.parametrize("override, message", [
    ("data.name=digitz", "data.name: expected one of "),
    ("model.name=mlpp", "model.name: expected one of "),
])
def test_a_misspelt_dataset_or_model_stops_the_sweep_before_any_run(small_study, tmp_path,
                                                                   capsys, override,
                                                                   message):
    code = main(["sweep", str(small_study()), "--out", str(tmp_path / "out"), "--set",
                 override])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("sgdwalk: error: study small, run small-s1: " + message)
    assert not (tmp_path / "out").exists()  # nothing started, nothing written
