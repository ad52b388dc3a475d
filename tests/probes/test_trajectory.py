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


def _record(model, opt, walk, x, y, steps, batch=8):
    """Train `steps` steps with the walk around them; (thetas, grads) as NumPy arrays."""
    thetas, grads = [], []
    for t in range(steps):
        xb, yb = x[t * batch : (t + 1) * batch], y[t * batch : (t + 1) * batch]
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        thetas.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy())
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy())
        walk.before_step(loss.detach(), (xb, yb))
        opt.step()
        walk.after_step(opt)
    thetas.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy())
    return thetas, grads


def test_sparse_schedule_on_a_float32_model_matches_numpy(kit):
    """80k float32 parameters (one float64 dot per layer and pair), observed at steps 0, 2,
    3 and 6 only: each cosine still pairs the step with the one just before it, and the path
    length still counts every step, to 1e-12 of NumPy in float64 on the same float32 values."""
    model = kit.tiny_mlp(d_in=300, hidden=256, classes=10, batchnorm=True, seed=3).float()
    x, y = kit.classification_data(n=64, d_in=300, classes=10)
    wd = 0.01
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, weight_decay=wd)
    walk = Walk(model, [Trajectory(lambda t: t in (0, 2, 3, 6))])
    assert walk.layout.numel > 2**16
    thetas, grads = _record(model, opt, walk, x.float(), y, steps=7)
    rows = dict(r for r in walk.rows if r[0] >= 0)
    assert sorted(rows) == [0, 2, 3, 6]
    f64 = lambda a: a.astype(np.float64)  # noqa: E731  exact
    u = [f64(thetas[t + 1] - thetas[t]) for t in range(7)]  # float32 differences, as probed
    gwd = [f64(grads[t] + np.float32(wd) * thetas[t]) for t in range(7)]
    for t, v in rows.items():
        g = f64(grads[t])
        path = sum(np.linalg.norm(u[s]) for s in range(t + 1))
        assert v["grad_norm"] == pytest.approx(np.linalg.norm(g), rel=1e-12)
        assert v["path_length"] == pytest.approx(path, rel=1e-12)
        assert v["dist_init"] == pytest.approx(
            np.linalg.norm(f64(thetas[t + 1] - thetas[0])), rel=1e-12)
        if t == 0:
            continue
        assert v["cos_grad"] == pytest.approx(_cos(f64(grads[t - 1]), g), rel=1e-12)
        assert v["cos_update"] == pytest.approx(_cos(u[t - 1], u[t]), rel=1e-12)
        assert v["cos_grad_wd"] == pytest.approx(_cos(gwd[t - 1], gwd[t]), rel=1e-12)
        np.testing.assert_allclose(
            v["cos_grad_layers"],
            [_cos(f64(grads[t - 1][a:b]), g[a:b]) for a, b in walk.layout.layer_bounds],
            rtol=1e-12)


def _deep_mlp(d_in: int, width: int = 128, depth: int = 4) -> torch.nn.Module:
    """Linear-BN-tanh blocks: 2 depth + 1 layers (9: NumPy sums them pairwise, not in order)."""
    torch.manual_seed(4)
    layers, d = [], d_in
    for _ in range(depth):
        layers += [torch.nn.Linear(d, width), torch.nn.BatchNorm1d(width), torch.nn.Tanh()]
        d = width
    return torch.nn.Sequential(*layers, torch.nn.Linear(d, 10))


@pytest.mark.parametrize("d_in", [3, 300])  # 52k, 90k parameters: products, float64 dots
def test_resumed_probe_gives_the_uninterrupted_rows_bit_for_bit(kit, d_in):
    """The squared norms carried from step to step equal the recomputed ones bit for bit."""
    x, y = kit.classification_data(n=64, d_in=d_in, classes=10)
    x = x.float()

    def run(stop_at=None):
        model = _deep_mlp(d_in)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-3)
        walk = Walk(model, [Trajectory()])
        assert (walk.layout.numel > 2**16) == (d_in == 300) and len(walk.layout.layers) == 9
        _record(model, opt, walk, x, y, steps=stop_at or 8)
        if stop_at is None:
            return walk.rows
        resumed = Walk(model, [Trajectory()])
        resumed.load_state_dict(walk.state_dict())
        _record(model, opt, resumed, x[stop_at * 8 :], y[stop_at * 8 :], steps=8 - stop_at)
        return [r for r in walk.rows if r[0] >= 0] + [r for r in resumed.rows if r[0] >= 0]

    whole, cut = [r for r in run() if r[0] >= 0], run(stop_at=3)
    assert [s for s, _ in whole] == [s for s, _ in cut] == list(range(8))
    for (_, a), (_, b) in zip(whole, cut):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)
