"""Measuring settings never reach the trajectory.

For SGD and for GD + noise on a BatchNorm network, every `walk.*` change (preset, BN policy,
line grid and sources, Lanczos and barrier settings) leaves the stored losses, the
evaluations, the final parameters and BN statistics and GD + noise's std bit-identical.
Before training estimated the std with the walk's evaluator, walk.bn_policy alone moved it
from 8.28e-3 (batch) to 2.07e-3 (eval) and 1.10e-2 (recalibrate) on the default preset.
"""

import pytest
import torch

from sgdwalk.experiment import train
from sgdwalk.store import RunStore, read_run

WALKS = [
    {"walk.preset": "off"},
    {"walk.preset": "cheap", "walk.bn_policy": "eval"},
    {"walk.preset": "line", "walk.bn_policy": "recalibrate", "walk.line_points": 5,
     "walk.line_min": -0.5},
    {"walk.preset": "full", "walk.bn_policy": "batch", "walk.sharpness_max_iter": 4,
     "walk.line_sources": '["probe", "batch", "heldout"]', "walk.barrier_ks": "[1]",
     "walk.economy_jvp": "true", "walk.noise": "every:1"},
    {"walk.preset": "economy", "walk.bn_policy": "eval", "walk.trajectory": "every:2"},
]
ALGORITHMS = {
    "gd_noise": {"optim.algorithm": "gd_noise", "optim.gd_chunk": 500, "train.epochs": 3},
    "sgd": {"train.max_steps": 12, "train.epochs": 1},
}
TRAJECTORY = ["loss", "lr", "train_loss", "train_acc", "val_loss", "test_acc", "noise_std"]


def _trajectory(run_dir):
    table = read_run(run_dir).sort_index()
    with RunStore.open(run_dir) as store:
        model = store.latest_checkpoint()[1]["model"]
        meta = store.meta()
    kept = table[[c for c in TRAJECTORY if c in table]]
    return table, kept, model, meta.get("noise_std")


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_no_walk_setting_changes_the_trajectory(tiny_config, tmp_path, algorithm):
    runs = [train(tiny_config(**ALGORITHMS[algorithm], **walk), tmp_path / str(i))
            for i, walk in enumerate(WALKS)]
    assert {r.status for r in runs} == {"completed"}
    (table0, ref, model0, std0), *others = [_trajectory(r.run_dir) for r in runs]
    assert any("running_mean" in k for k in model0)  # BatchNorm statistics compared too
    assert (std0 is not None and std0 > 0) == (algorithm == "gd_noise")
    probe_columns = set()
    for table, kept, model, std in others:
        assert kept.equals(ref)  # losses, lr and evaluations, NaNs in place
        assert model.keys() == model0.keys()
        assert all(torch.equal(model[k], model0[k]) for k in model0)
        assert std == std0  # GD + noise: one std whatever the walk measures
        probe_columns |= set(table.columns) - set(table0.columns)
    assert {"line_probe_floor_a", "econ_height", "sharp_lambda_max"} <= probe_columns
