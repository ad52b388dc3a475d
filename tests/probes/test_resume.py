"""Exact resumption with every probe on: a killed and resumed run stores the rows (scalars
and vectors) of a run that never stopped, because probe state (trajectory history, Lanczos
warm start, barrier ring buffers, the probe generator) is checkpointed."""

import pytest
import torch

from sgdwalk.experiment import resume, train
from sgdwalk.store import RunStore, read_run

FULL = {
    "walk.preset": "full",
    "walk.noise": "every:3",
    "walk.sharpness": "every:4",
    "walk.sharpness_k": 2,
    "walk.sharpness_max_iter": 10,
    "walk.line_sources": '["probe", "batch"]',
    "walk.barrier_ks": "[1, 3]",
    "train.epochs": 1,
    "train.checkpoint_every": 4,
    "train.flush_every": 3,
}


@pytest.mark.parametrize("halt", [6, 13])
def test_resume_with_every_probe_gives_the_rows_of_an_uninterrupted_run(
    tiny_config, tmp_path, halt
):
    cfg = tiny_config(**FULL)
    whole = train(cfg, tmp_path / "whole")
    stopped = train(cfg, tmp_path / "cut", halt_at_step=halt)
    assert stopped.status == "stopped"
    assert read_run(stopped.run_dir).index.max() < whole.steps
    done = resume(stopped.run_dir)
    assert done.status == "completed" and done.steps == whole.steps
    a, b = read_run(done.run_dir), read_run(whole.run_dir)
    assert {"barrier_floor_k3", "sharp_lambda_max", "noise_trace", "econ_height"} <= set(a)
    assert a.equals(b)
    with RunStore.open(done.run_dir) as s, RunStore.open(whole.run_dir) as w:
        names = w.names()
        assert s.names() == names
        for name in names["vectors"]:
            assert s.vectors(name).equals(w.vectors(name)), name
        ms, mw = s.latest_checkpoint()[1], w.latest_checkpoint()[1]
    assert all(torch.equal(ms["model"][k], mw["model"][k]) for k in mw["model"])
