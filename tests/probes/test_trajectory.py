"""Trajectory probe against NumPy on recorded parameters and gradients (float64, 1e-12)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sgdwalk.probes.trajectory import Trajectory
from sgdwalk.probes.walk import Walk


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_norms_cosines_and_distances_match_numpy(kit):
    model = kit.tiny_mlp(seed=2)
    x, y = kit.classification_data(n=30)
    wd, lr, steps = 0.01, 0.3, 5
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    walk = Walk(model, [Trajectory()])
    thetas, grads = [], []
    for t in range(steps):
        xb, yb = x[t * 6 : t * 6 + 6], y[t * 6 : t * 6 + 6]
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        thetas.append(kit.flat_params(model).numpy().copy())
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy().copy())
        walk.before_step(loss.detach(), (xb, yb))
        opt.step()
        walk.after_step(opt)
    thetas.append(kit.flat_params(model).numpy().copy())
    rows = [v for s, v in walk.rows if s >= 0]
    u = [thetas[t + 1] - thetas[t] for t in range(steps)]
    bounds = walk.layout.layer_bounds
    assert walk.layout.layers == ("0", "2")
    path = 0.0
    for t, v in enumerate(rows):
        g, gwd = grads[t], grads[t] + wd * thetas[t]
        path += np.linalg.norm(u[t])
        dist = np.linalg.norm(thetas[t + 1] - thetas[0])
        assert v["grad_norm"] == pytest.approx(np.linalg.norm(g), rel=1e-12)
        assert v["update_norm"] == pytest.approx(np.linalg.norm(u[t]), rel=1e-12)
        assert v["cos_grad_update"] == pytest.approx(_cos(g, u[t]), rel=1e-12)
        assert v["dist_init"] == pytest.approx(dist, rel=1e-12)
        assert v["path_length"] == pytest.approx(path, rel=1e-12)
        assert v["dist_path_ratio"] == pytest.approx(dist / path, rel=1e-12)
        layer_u = np.array([np.linalg.norm(u[t][a:b]) for a, b in bounds])
        np.testing.assert_allclose(v["update_norm_layers"], layer_u, rtol=1e-12)
        np.testing.assert_allclose(
            v["cos_grad_update_layers"], [_cos(g[a:b], u[t][a:b]) for a, b in bounds],
            rtol=1e-12,
        )
        layer_path = sum(np.array([np.linalg.norm(u[s][a:b]) for a, b in bounds])
                         for s in range(t + 1))
        np.testing.assert_allclose(v["path_length_layers"], layer_path, rtol=1e-12)
        if t == 0:
            assert np.isnan(v["cos_grad"]) and np.isnan(v["cos_update"])
            assert "cos_grad_layers" not in v
            continue
        assert v["cos_grad_update"] > -0.99  # momentum: u is not along -g
        gp, gwdp = grads[t - 1], grads[t - 1] + wd * thetas[t - 1]
        assert v["cos_grad"] == pytest.approx(_cos(gp, g), rel=1e-12)
        assert v["cos_grad_wd"] == pytest.approx(_cos(gwdp, gwd), rel=1e-12)
        assert v["cos_update"] == pytest.approx(_cos(u[t - 1], u[t]), rel=1e-12)
        np.testing.assert_allclose(
            v["cos_update_layers"], [_cos(u[t - 1][a:b], u[t][a:b]) for a, b in bounds],
            rtol=1e-12,
        )


def test_plain_sgd_update_is_minus_the_gradient(kit):
    model = kit.tiny_mlp()
    x, y = kit.classification_data()
    walk = Walk(model, "cheap")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        walk.step(opt, x, y)
    for _, v in [r for r in walk.rows if r[0] >= 0]:
        assert v["cos_grad_update"] == pytest.approx(-1.0, abs=1e-12)
