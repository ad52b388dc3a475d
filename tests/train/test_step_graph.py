"""The step's graph kept for the curvature probe leaves the trajectory bit for bit.

At the steps where the curvature probe is due, the Trainer's backward runs with
create_graph (`functional.hvp.StepGraph`) and the probe reads H u_t through it after the
step. Runs with and without it (`Trainer.step_graphs`), SGD with momentum and weight decay,
the probe every other step (so graph-keeping and plain backwards alternate): the stored
losses and lr, the final parameters and BN statistics are equal bit for bit, on an MLP with
BN and on a pre-activation ResNet-8 (convolutions, BN), and the curvature agrees to float32
round-off.
"""

import pytest
import torch

from sgdwalk.experiment import build_trainer, run_trainer
from sgdwalk.store import RunStore, read_run
from sgdwalk.store.identity import create_run

MODELS = {
    "mlp-bn": {},
    "resnet8-bn": {"data.name": "synthetic", "data.synthetic_shape": "[3, 8, 8]",
                   "data.synthetic_n": 600, "data.synthetic_classes": 4, "model.name": "resnet",
                   "model.depth": 8, "model.width_mult": 0.5, "optim.batch_size": 32},
}


def _run(cfg, root, shared: bool):
    trainer = build_trainer(cfg)
    trainer.step_graphs = shared
    result = run_trainer(trainer, create_run(cfg, root))
    with RunStore.open(result.run_dir) as store:
        model = store.latest_checkpoint()[1]["model"]
    return read_run(result.run_dir).sort_index(), model


@pytest.mark.parametrize("model", sorted(MODELS))
def test_the_step_graph_leaves_the_trajectory_bit_identical(tiny_config, tmp_path, model):
    cfg = tiny_config(**{"walk.preset": "off", "walk.curvature": "every:2",
                         "optim.momentum": 0.9, "optim.weight_decay": 5e-4,
                         "train.max_steps": 7, "train.epochs": 1, **MODELS[model]})
    (shared, final), (own, final_own) = (_run(cfg, tmp_path / str(s), s) for s in (True, False))
    assert any("running_mean" in k for k in final)
    assert final.keys() == final_own.keys()
    assert all(torch.equal(final[k], final_own[k]) for k in final)
    for name in ("loss", "lr", "val_loss", "test_acc"):
        assert shared[name].equals(own[name])
    due = shared["curv_uhu"].notna()
    assert list(shared.index[due]) == [0, 2, 4, 6]
    assert (shared.loc[due, "curv_step_graph"] == 1).all()
    assert (own.loc[due, "curv_step_graph"] == 0).all()
    torch.testing.assert_close(torch.tensor(shared.loc[due, "curv_kappa"].to_numpy()),
                               torch.tensor(own.loc[due, "curv_kappa"].to_numpy()),
                               rtol=1e-4, atol=0)
