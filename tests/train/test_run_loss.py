"""`train.loss` and `model.activation`: the CLI trains the edge-of-stability setting (MSE on
one-hot targets, a tanh MLP) and the walk measures the loss that was trained."""

from __future__ import annotations

import pytest
import torch

from sgdwalk import losses
from sgdwalk.config import load_config
from sgdwalk.errors import ConfigError
from sgdwalk.experiment import build_trainer, train
from sgdwalk.store import read_run

SETTINGS = ["train.epochs=1", "train.max_steps=3", "train.progress=false",
            "walk.preset=economy", "train.loss=mse", "model.activation=tanh"]


def test_mse_run_trains_and_measures_the_squared_error(tmp_path):
    cfg = load_config("default", SETTINGS)
    result = train(cfg, tmp_path)
    table = read_run(result.run_dir)
    # the first row's loss is the batch mean of the per-example MSE to one-hot targets at
    # theta_0, recomputed here from a fresh trainer (same seed, same first batch)
    trainer = build_trainer(cfg)
    assert any(isinstance(m, torch.nn.Tanh) for m in trainer.model.modules())
    assert not any(isinstance(m, torch.nn.ReLU) for m in trainer.model.modules())
    (x, y), = trainer.batches.batch(0)
    with torch.no_grad():
        want = float(losses.mse(trainer.model(x), y).double().mean())
    assert table.loc[0, "loss"] == pytest.approx(want, rel=1e-6)
    # cross-entropy of 10 classes at init is about log(10) = 2.3; the one-hot MSE is below 1
    assert 0 < table.loc[0, "loss"] < 1
    assert table["econ_f1"].dropna().between(0, 1).all()  # the walk measured MSE too
    assert 0 < table.loc[-1, "train_loss"] < 1  # the evaluation of theta_0 is MSE too


def test_cross_entropy_stays_the_default_and_bad_names_are_one_line():
    assert load_config("default").train.loss == "cross_entropy"
    assert load_config("default").model.activation == "relu"
    with pytest.raises(ConfigError, match="train.loss: expected one of"):
        load_config("default", ["train.loss=hinge"])
    with pytest.raises(ConfigError, match="model.activation: expected one of"):
        load_config("default", ["model.activation=swish"])
