"""The studies of the field, `edge-of-stability` and `catapult`, at tiny size: what they
record for EOS1-EOS4 and CAT1-CAT3, and the catapult's step size set from lambda_0."""

from __future__ import annotations

import pytest

import sgdwalk
from sgdwalk.analysis import MISSING, decide_claims
from sgdwalk.studies import load_study, run_sweep

pytestmark = pytest.mark.e2e  # whole studies: .ci/run's second layer

TINY = ["train.max_steps=6", "data.probe_size=1257", "walk.sharpness_max_iter=30"]


def test_catapult_sets_eta_from_lambda0_and_records_it(tmp_path, one_thread):
    study = load_study("catapult", overrides=[*TINY, "model.widths=[32]", "train.seed=1",
                                              "grid.optim.lr_over_lambda0=[1.0, 3.0]"])
    result = run_sweep(study, tmp_path, progress=False)
    assert result.ok, result.summary()
    results = sgdwalk.load(result.root)
    steps = results.table()
    for run_id, row in results.runs.iterrows():
        c = row["optim.lr_over_lambda0"]
        meta = results.meta(run_id)
        assert meta["lr"] * meta["lambda0"] == pytest.approx(c, rel=1e-9)
        # the sharpness probe at step 0 (Lanczos on the same training split, tol 1e-3)
        # measures the same lambda_0 the trainer set the step from
        first = steps[(steps["run_id"] == run_id) & (steps["step"] == 0)]
        assert float(first["sharp_lr_lambda"].iloc[0]) == pytest.approx(c, rel=1e-3)
    claims = {c.id: c for c in decide_claims(results, n_boot=20)}
    assert claims["CAT1"].verdict != MISSING and claims["CAT3"].verdict == MISSING
    assert ">= 12" in claims["CAT3"].needs
    assert all(claims[f"C{i}"].verdict == MISSING for i in range(1, 13))  # not meant for them


def test_edge_of_stability_records_what_its_claims_read(tmp_path, one_thread):
    study = load_study("edge-of-stability", overrides=[*TINY, "grid.optim.lr=[0.5]",
                                                       "walk.line=every:1",
                                                       "walk.curvature=every:1"])
    assert {e.variant: e.config.train.loss for e in study.entries} == {"mse": "mse",
                                                                      "ce": "cross_entropy"}
    result = run_sweep(study, tmp_path, progress=False)
    assert result.ok, result.summary()
    table = sgdwalk.load(result.root).table()
    for metric in ("loss", "sharp_lr_lambda", "line_probe_floor_a", "curv_lr_kappa"):
        assert table.groupby("run_id")[metric].count().gt(0).all(), metric
    results = sgdwalk.load(result.root)
    claims = {c.id: c for c in decide_claims(results, n_boot=20)}
    # six steps from init: the sharpness has not reached 2/eta, so EOS1 is decided on the
    # mse run alone and EOS2 / EOS3 need a run at the edge
    assert [results.runs.loc[r, "variant"] for r in claims["EOS1"].runs] == ["mse"]
    assert claims["EOS2"].verdict == MISSING and "reaches 0.9" in claims["EOS2"].needs
