"""Two gloo processes under torchrun give the walk values of one process on the same
global batch (without BatchNorm, which normalises each rank's shard)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sgdwalk.config import load_config
from sgdwalk.experiment import train
from sgdwalk.store import RunStore, read_run
from sgdwalk.store.identity import run_dir_name

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer

OVERRIDES = [
    "data.probe_size=128", "data.probe_batch=64", "model.widths=[32]",
    "model.batchnorm=false", "optim.batch_size=32", "optim.lr=0.2", "train.max_steps=24",
    "train.epochs=1", "train.checkpoint_every=10", "train.progress=false",
    "walk.preset=full", "walk.line_sources=[\"probe\",\"batch\"]", "walk.sharpness=every:8",
    "walk.barrier=every:4", "walk.barrier_ks=[1,2]", "walk.noise=every:4",
    "walk.noise_microbatches=4",
]
# Float sums are ordered differently across 2 processes (gradient all-reduce, per-shard
# losses), so values agree to round-off that grows over the 24 steps: measured max
# relative difference 7.3e-5 on this machine.
RTOL, ATOL = 3e-4, 1e-6


def _torchrun():
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else shutil.which("torchrun") and ["torchrun"]


@pytest.mark.skipif(not _torchrun(), reason="torchrun not installed")
def test_two_gloo_processes_equal_one_process(tmp_path):
    config = load_config("default", OVERRIDES)
    single = train(config, tmp_path / "single")
    sets = [a for o in OVERRIDES for a in ("--set", o)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*_torchrun(), "--standalone", "--nproc_per_node", "2", "-m", "sgdwalk.cli", "train",
         "default", "--out", str(tmp_path / "ddp"), *sets],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp_dir = tmp_path / "ddp" / run_dir_name(config)
    a = read_run(single.run_dir).sort_index()
    b = read_run(ddp_dir).sort_index()
    assert list(a.index) == list(b.index) and set(a.columns) == set(b.columns)
    probe_names = [c for c in a.columns if c.startswith(("line_", "econ_", "curv_", "sharp_",
                                                         "align_", "barrier_", "noise_",
                                                         "cos_", "dist_"))]
    assert len(probe_names) > 40
    # which path the curvature product took: the step's own graph in one process, the
    # probe's own product under torchrun (docs/metrics.md, curv_step_graph); the values agree
    assert (a["curv_step_graph"].dropna() == 1).all()
    assert (b["curv_step_graph"].dropna() == 0).all()
    a, b = a.drop(columns="curv_step_graph"), b.drop(columns="curv_step_graph")
    diff = np.abs(b[a.columns].to_numpy(float) - a.to_numpy(float))
    assert np.nanmax(diff) > 0  # really two computations, not one file read twice
    rel = diff / np.maximum(np.abs(a.to_numpy(float)), 1e-3)
    print(f"\nDDP vs one process: max |diff| {np.nanmax(diff):.2e}, "
          f"max relative {np.nanmax(rel):.2e} over {a.shape[0]} steps x {a.shape[1]} values")
    np.testing.assert_allclose(b[a.columns].to_numpy(float), a.to_numpy(float), rtol=RTOL,
                               atol=ATOL, equal_nan=True)
    with RunStore.open(single.run_dir) as s, RunStore.open(ddp_dir) as d:
        assert d.meta()["status"] == "completed" and d.meta()["processes"] == 2
        assert s.meta()["processes"] == 1
        for name in s.names()["vectors"]:
            np.testing.assert_allclose(d.vectors(name).to_numpy(float),
                                       s.vectors(name).to_numpy(float), rtol=RTOL, atol=ATOL,
                                       equal_nan=True, err_msg=name)
