"""The Walk as a library around a user's own loop, model, optimizer and probe set."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sgdwalk.probes.base import Probe
from sgdwalk.probes.walk import Walk


class RecordUpdate(Probe):
    """A user probe (the extension point): keeps u_t and theta_t of every step."""

    name = "record"

    def __init__(self):
        super().__init__()
        self.seen = []

    def observe(self, ctx):
        self.seen.append((ctx.theta.clone(), ctx.theta_next.clone(), ctx.update.clone()))
        return {"record_du": float((ctx.update - (ctx.theta_next - ctx.theta)).abs().max())}


class UserNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU())
        self.head = nn.Linear(4 * 8, 3)

    def forward(self, x):
        return self.head(self.body(x.unsqueeze(1)).flatten(1))


@pytest.mark.parametrize("make_opt", [
    lambda ps: torch.optim.Adam(ps, lr=1e-2),
    lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3),
], ids=["adam", "sgd-momentum-wd"])
def test_user_loop_measures_the_applied_update(make_opt):
    torch.manual_seed(0)
    model = UserNet()
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    recorder = RecordUpdate()
    from sgdwalk.probes.presets import build_probes

    probes = build_probes("curvature") + [recorder]
    walk = Walk(model, probes, probe_set=(x[:32], y[:32]), probe_batch=16)
    opt = make_opt(model.parameters())
    applied = []
    for i in range(4):
        xb, yb = x[i * 16 : (i + 1) * 16], y[i * 16 : (i + 1) * 16]
        before = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        walk.before_step(loss, (xb, yb))
        opt.step()
        walk.after_step(opt)
        applied.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]) - before)
    table = walk.table()
    for (theta, theta_next, u), du in zip(recorder.seen, applied):
        assert torch.equal(u, du) and torch.equal(u, theta_next - theta)
    steps = table.loc[0:]
    assert (steps["record_du"] == 0).all()
    assert (steps["cos_grad_update"].loc[1:] > -0.999).all()  # not plain SGD: u != -lr g
    assert steps["line_probe_floor_a"].notna().all() and steps["curv_kappa"].notna().all()
    assert steps.loc[0, "sharp_lambda_max"] > 0
    assert len(table.loc[-1, "line_grid"]) == 13


def test_step_helper_and_preset_names():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))
    x, y = torch.randn(20, 5), torch.randint(0, 2, (20,))
    walk = Walk(model, "economy")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        loss = walk.step(opt, x, y)
    assert loss.shape == () and walk.step_count == 3
    row = walk.table().loc[2]
    with torch.no_grad():
        assert row["econ_f1"] == pytest.approx(float(F.cross_entropy(model(x), y)), rel=1e-6)


def _regression(n=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=gen)
    y = x @ torch.tensor([1.5, -2.0, 0.5]) + 3.0 + 0.1 * torch.randn(n, generator=gen)
    torch.manual_seed(seed)
    return nn.Linear(3, 1), x, y


def test_step_trains_an_mse_regression_on_the_walks_loss():
    """Walk.step descends the walk's loss_fn (it used to train on cross-entropy, which left
    a one-output regression model where it was), and the probes measure that same loss."""
    from sgdwalk.losses import mse

    model, x, y = _regression()
    walk = Walk(model, "economy", loss_fn=mse)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(30):
        with torch.no_grad():
            expected = float(F.mse_loss(model(x).squeeze(-1), y))
        losses.append(float(walk.step(opt, x, y)))
        assert losses[-1] == pytest.approx(expected, rel=1e-6)
    assert losses[-1] < 0.05 * losses[0]
    table = walk.table()
    assert (table["update_norm"] > 0).all() and (table["grad_norm"] > 0).all()
    with torch.no_grad():
        final = float(F.mse_loss(model(x).squeeze(-1), y))
    assert table.loc[29, "econ_f1"] == pytest.approx(final, rel=1e-6)  # f(1) = L(theta_30)


def test_step_with_mse_on_class_labels_trains_on_one_hot_targets():
    from sgdwalk.losses import mse

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(20, 5), torch.randint(0, 3, (20,))
    walk = Walk(model, "economy", loss_fn=mse)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with torch.no_grad():
        expected = float(F.mse_loss(model(x), F.one_hot(y, 3).float()))
    assert float(walk.step(opt, x, y)) == pytest.approx(expected, rel=1e-6)
    with torch.no_grad():
        after = float(F.mse_loss(model(x), F.one_hot(y, 3).float()))
    assert walk.table().loc[0, "econ_f1"] == pytest.approx(after, rel=1e-6)


def test_a_reduced_loss_is_a_one_line_error_at_first_use():
    from sgdwalk.errors import ConfigError

    model, x, y = _regression()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    reduced = lambda out, t: F.mse_loss(out.squeeze(-1), t)  # noqa: E731
    with pytest.raises(ConfigError, match="reduction='none'") as err:
        Walk(model, "cheap", loss_fn=reduced).step(opt, x, y)
    assert "\n" not in str(err.value)
    # in one's own loop, the first probe that evaluates the loss says the same
    walk = Walk(model, "line", loss_fn=reduced, probe_set=(x, y))
    opt.zero_grad()
    loss = F.mse_loss(model(x).squeeze(-1), y)
    loss.backward()
    walk.before_step(loss, (x, y))
    opt.step()
    with pytest.raises(ConfigError, match=r"expected per-example losses of shape \(64,\)"):
        walk.after_step(opt)
