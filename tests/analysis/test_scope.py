"""Which runs a claim reads: on a table holding several studies, the runs of the studies
that declare the claim (their sweep.json's `claims`); elsewhere, every run."""

import numpy as np
import pandas as pd

from sgdwalk.analysis import MISSING, SUPPORTED, decide_claims
from sgdwalk.analysis.frames import Tables
from sgdwalk.analysis.scope import claim_tables
from sgdwalk.analysis.synthetic import run_frame

N_BOOT = 200


def line_run(rng, run_id, study, p_interior, lr=1.0, algorithm="sgd"):
    n = 60
    cols = {
        "line_probe_interior": (rng.random(n) < p_interior).astype(float),
        "line_probe_convex": np.ones(n),
        "line_probe_height": np.ones(n),
        "line_probe_floor_a": np.full(n, 0.5),
        "line_probe_eps": np.full(n, 0.1),
        "line_probe_crossing": np.zeros(n),
        "cos_update": np.full(n, -0.5),
    }
    spe = 20 if algorithm == "sgd" else 1
    table = run_frame(run_id, cols, steps_per_epoch=spe, lr=lr, algorithm=algorithm)
    table["study"] = study
    return table


def sweep(rng):
    """trajectory: an SGD run with interior floors and a GD run; lr-batch and noise: runs
    without them (a study about other claims, at other learning rates)."""
    return pd.concat([
        line_run(rng, "traj-sgd", "trajectory", 1.0),
        line_run(rng, "traj-gd", "trajectory", 1.0, lr=4.0, algorithm="gd"),
        line_run(rng, "lrb-sgd", "lr-batch", 0.05, lr=0.5),
        line_run(rng, "noise-gd", "noise", 0.05, lr=1.0, algorithm="gd"),
    ], ignore_index=True)


def claims(tables):
    return {c.id: c for c in decide_claims(tables, n_boot=N_BOOT, only=["C1", "C10", "C12"])}


def test_a_claim_reads_only_the_studies_that_declare_it():
    t = Tables.from_frames(sweep(np.random.default_rng(0)), study_claims={
        "trajectory": ("C1", "C2", "C12"), "lr-batch": ("C3",), "noise": ("C9",)},
        metas={r: {"parameters": 1000} for r in ("traj-sgd", "traj-gd", "lrb-sgd", "noise-gd")})
    got = claims(t)
    assert got["C1"].runs == ["traj-sgd"] and got["C1"].verdict == SUPPORTED
    assert got["C12"].runs == ["traj-gd"] and got["C12"].verdict == SUPPORTED
    # no study here declares C10: its runs were not designed for it, it is not decided
    # from them (rule 5) but names the studies that would decide it
    assert got["C10"].verdict == MISSING and not got["C10"].runs
    assert "sgdwalk sweep trajectory" in got["C10"].needs and "barriers" in got["C10"].needs


def test_without_declared_claims_every_run_is_pooled():
    got = claims(Tables.from_frames(sweep(np.random.default_rng(0))))
    assert sorted(got["C1"].runs) == ["lrb-sgd", "traj-sgd"]
    assert sorted(got["C12"].runs) == ["noise-gd", "traj-gd"]
    # the lr-batch run's steps drag the share down to about half
    assert got["C1"].verdict != SUPPORTED and got["C1"].parts[0].value < 0.6


def test_claim_tables_hold_the_runs_meant_for_the_claim_and_their_vectors():
    steps = sweep(np.random.default_rng(0))
    vectors = {"line_probe": pd.DataFrame({"run_id": ["traj-sgd", "lrb-sgd"], "step": [0, 0],
                                           "v0": [1.0, 2.0]})}
    t = Tables.from_frames(steps, vectors=vectors, study_claims={"trajectory": ("C1",),
                                                                 "lr-batch": ("C3",)})
    sub = claim_tables(t, "C1")
    assert list(sub.runs.index) == ["traj-gd", "traj-sgd"]
    assert list(sub.vectors("line_probe")["run_id"]) == ["traj-sgd"]
    assert set(sub.steps["run_id"]) == {"traj-gd", "traj-sgd"}
    assert claim_tables(t, "C10") is t  # declared by no study: every run
