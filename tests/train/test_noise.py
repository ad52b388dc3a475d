"""GD + noise's std at theta_0: against NumPy on per-batch gradients of the training loss,
from train-mode forwards, and without touching the model or the training RNG."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sgdwalk.config import OptimConfig
from sgdwalk.train.noise import isotropic_noise_std


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                               torch.nn.Dropout(0.2), torch.nn.Linear(8, 3))


def _data(n=40):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 6, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def _reference_rows(model, x, y, cfg, seed):
    """Per-batch gradients by plain backward on copies of the model in train mode, drawing
    the same batches and the same dropout masks (the global RNG forked as the code does)."""
    gen = torch.Generator().manual_seed(seed)
    b = min(cfg.noise_batch, len(y))
    batches = [torch.randperm(len(y), generator=gen)[:b] for _ in range(cfg.noise_samples)]
    rows = []
    state = torch.get_rng_state()
    for idx in batches:
        twin = copy.deepcopy(model).train()
        F.cross_entropy(twin(x[idx]), y[idx]).backward()
        rows.append(np.concatenate([p.grad.double().numpy().ravel() for p in twin.parameters()]))
    torch.set_rng_state(state)
    return np.stack(rows)


@pytest.mark.parametrize("kind", ["matched", "original"])
def test_std_equals_numpy_on_per_batch_gradients(kind):
    model, (x, y) = _model(), _data()
    cfg = OptimConfig(algorithm="gd_noise", noise=kind, noise_batch=8, noise_samples=6)
    rows = _reference_rows(model, x, y, cfg, seed=3)
    var = rows.var(axis=0, ddof=1)
    want = np.sqrt(var.sum() / rows.shape[1]) if kind == "matched" else 0.02 * var.max()
    got = isotropic_noise_std(cfg, model, F.cross_entropy, x, y, torch.Generator().manual_seed(3))
    assert got == pytest.approx(want, rel=1e-5)
    assert got > 0


def test_estimate_leaves_model_buffers_mode_and_rng_alone():
    model, (x, y) = _model(), _data()
    model.eval()  # the estimate is still of train-mode forwards
    cfg = OptimConfig(algorithm="gd_noise", noise_batch=8, noise_samples=4)
    state = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    in_eval = isotropic_noise_std(cfg, model, F.cross_entropy, x, y,
                                  torch.Generator().manual_seed(0))
    assert not model.training
    assert torch.equal(torch.get_rng_state(), rng)  # dropout drew from a fork
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    in_train = isotropic_noise_std(cfg, model.train(), F.cross_entropy, x, y,
                                   torch.Generator().manual_seed(0))
    assert in_eval == in_train
