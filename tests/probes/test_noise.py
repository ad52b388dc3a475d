"""Gradient-noise probe against micro-batch gradients computed by hand (least squares)."""

import math

import numpy as np
import pytest
import torch

from sgdwalk.probes.noise import GradientNoise
from sgdwalk.probes.walk import Walk


def _step(kit, problem, batch, full_batch=False, m=4):
    w0 = torch.linspace(-1, 1, problem.X.shape[1], dtype=torch.float64)
    model = problem.model(w0)
    walk = Walk(model, [GradientNoise(microbatches=m)], loss_fn=kit.half_squared_error)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.cat([c[0] for c in batch]) if isinstance(batch, list) else batch[0]
    y = torch.cat([c[1] for c in batch]) if isinstance(batch, list) else batch[1]
    opt.zero_grad()
    loss = kit.half_squared_error(model(x), y).mean()
    loss.backward()
    walk.before_step(loss.detach(), batch, full_batch=full_batch)
    opt.step()
    return w0, walk.after_step(opt)


@pytest.mark.parametrize("as_chunks", [False, True])
def test_trace_is_the_rescaled_micro_batch_variance(kit, as_chunks):
    problem = kit.make_least_squares(n=42)
    X, y = problem.X, problem.y
    batch = [(X[:20], y[:20]), (X[20:], y[20:])] if as_chunks else (X, y)
    w0, v = _step(kit, problem, batch)
    B, m = 42, 4
    b = B // m  # 10; the last 2 examples are left out
    micro = np.stack([
        (problem.X[i * b:(i + 1) * b].T @ (problem.X[i * b:(i + 1) * b] @ w0
                                         - problem.y[i * b:(i + 1) * b]) / b).numpy()
        for i in range(m)
    ])
    s2 = ((micro - micro.mean(0)) ** 2).sum() / (m - 1)
    g = problem.grad(w0).numpy()
    assert v["noise_trace"] == pytest.approx(s2 * b / B, rel=1e-10)
    assert v["noise_grad_sq"] == pytest.approx(float(g @ g), rel=1e-12)
    assert v["noise_snr"] == pytest.approx(float(g @ g) / (s2 * b / B), rel=1e-10)


def test_no_noise_for_full_batch_or_tiny_batches(kit):
    problem = kit.make_least_squares(n=40)
    _, v = _step(kit, problem, (problem.X, problem.y), full_batch=True)
    assert math.isnan(v["noise_trace"]) and math.isnan(v["noise_snr"])
    assert v["noise_grad_sq"] > 0
    _, v = _step(kit, problem, (problem.X[:7], problem.y[:7]))  # 4 micro-batches of 1
    assert math.isnan(v["noise_trace"])


def test_microbatches_must_be_at_least_two():
    with pytest.raises(ValueError, match="microbatches"):
        GradientNoise(microbatches=1)


def test_trainer_marks_gd_steps_full_batch(tiny_config, tmp_path):
    from sgdwalk.experiment import train
    from sgdwalk.store import read_run

    cfg = tiny_config(**{"optim.algorithm": "gd", "data.train_size": 200, "train.epochs": 3,
                         "walk.preset": "full", "walk.noise": "every:1"})
    table = read_run(train(cfg, tmp_path).run_dir).loc[0:]
    assert len(table) == 3
    assert table["noise_trace"].isna().all() and (table["noise_grad_sq"] > 0).all()
    sgd = read_run(train(tiny_config(**{"walk.preset": "full", "walk.noise": "every:1",
                                        "train.epochs": 1}), tmp_path).run_dir).loc[0:]
    assert (sgd["noise_trace"] > 0).all()
