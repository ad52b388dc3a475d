"""`optim.lr_over_lambda0`: the step size set relative to the sharpness at init (the
catapult study), lambda_0 checked against the full autograd Hessian of the training loss."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from sgdwalk import losses
from sgdwalk.config import load_config
from sgdwalk.errors import ConfigError
from sgdwalk.experiment import build_trainer, train
from sgdwalk.functional.flat import ParamLayout
from sgdwalk.store import RunStore, read_run

SETTINGS = ["model.widths=[8]", "model.batchnorm=false", "model.activation=tanh",
            "optim.algorithm=gd", "train.loss=mse", "data.augment=false",
            "train.progress=false", "walk.preset=off", "train.epochs=3"]


def exact_lambda0(trainer) -> float:
    """The top eigenvalue of the autograd Hessian of the mean training MSE at theta_0."""
    (x, y), = trainer.batches.batch(0)
    model = trainer.model
    layout = ParamLayout.of(model)
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()

    def loss(flat):
        out = functional_call(model.double(), layout.views(flat), (x.double(),))
        return losses.mse(out, y).mean()

    h = torch.autograd.functional.hessian(loss, theta)
    model.float()
    return float(torch.linalg.eigvalsh(h)[-1])


def test_lr_is_c_over_the_exact_top_eigenvalue_at_init_and_recorded(tmp_path):
    trainer = build_trainer(load_config("default", [*SETTINGS, "optim.lr_over_lambda0=3"]))
    lam = exact_lambda0(trainer)
    lr = trainer.optimizer.param_groups[0]["lr"]
    assert lr * lam == pytest.approx(3.0, rel=1e-4)
    assert trainer.facts["lambda0"] == pytest.approx(lam, rel=1e-4)
    assert trainer.facts["lr"] == lr


def test_the_run_is_the_run_with_that_lr_set_by_hand(tmp_path):
    relative = train(load_config("default", [*SETTINGS, "optim.lr_over_lambda0=3"]),
                     tmp_path / "a")
    rows = read_run(relative.run_dir)
    with RunStore.open(relative.run_dir) as store:
        recorded = store.meta()
    assert recorded["lr"] * recorded["lambda0"] == pytest.approx(3.0, rel=1e-6)
    by_hand = train(load_config("default", [*SETTINGS, f"optim.lr={recorded['lr']!r}"]),
                    tmp_path / "b")
    same = read_run(by_hand.run_dir)["loss"].dropna()
    assert len(same) == 3 and same.tolist() == rows["loss"].dropna().tolist()  # bit for bit


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_a_bad_ratio_is_one_line(value):
    with pytest.raises(ConfigError, match=r"optim.lr_over_lambda0: expected a number > 0"):
        load_config("default", [f"optim.lr_over_lambda0={value}"])
