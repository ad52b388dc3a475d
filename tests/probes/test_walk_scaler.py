"""A hand-called walk under torch.amp.GradScaler measures the gradient the optimizer applies.

GradScaler multiplies the loss by its scale (1024 here), so p.grad holds 1024 g until the
scaler unscales it inside `scaler.step` (or in `scaler.unscale_`). `before_step(...,
scaler=, optimizer=)` divides its copy as the scaler does, unless the scaler already did;
its values must equal, bit for bit, those of the walk attached through the optimizer's
step hooks (which fire after the unscaling). GradScaler runs on CPU in torch 2.13.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sgdwalk.errors import ConfigError
from sgdwalk.probes.walk import Walk

SCALE, LR, BATCH = 1024.0, 0.1, 16
PROBES = "economy"  # grad_norm, cosines, and the economy's f'(0) = <g_t, u_t>


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3))


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(2)
    return torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)


def _run(data, how: str, poison_step: int | None = None):
    """Train with a GradScaler; the walk is attached ("attach") or called by hand with the
    scaler ("hand"), after an explicit unscale_ ("hand-unscaled"), or without it ("blind")."""
    x, y = data
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    scaler = torch.amp.GradScaler("cpu", init_scale=SCALE)
    walk = Walk(model, PROBES)
    hooks = walk.attach(opt) if how == "attach" else None
    for i, (xb, yb) in enumerate(zip(x.split(BATCH), y.split(BATCH))):
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        scaler.scale(loss).backward()
        if i == poison_step:  # an overflow: the scaler skips this step
            model[0].weight.grad[0, 0] = float("inf")
        if hooks is not None:
            hooks.record(loss, (xb, yb))
        elif how == "hand-unscaled":
            scaler.unscale_(opt)
            walk.before_step(loss, (xb, yb), scaler=scaler, optimizer=opt)
        elif how == "hand":
            walk.before_step(loss, (xb, yb), scaler=scaler, optimizer=opt)
        else:
            walk.before_step(loss, (xb, yb))
        scaler.step(opt)
        scaler.update()
        if hooks is None:
            walk.after_step(opt)
    return walk.table(), walk


@pytest.mark.parametrize("how", ["hand", "hand-unscaled"])
def test_hand_called_walk_with_the_scaler_equals_the_attached_walk(data, how):
    got, _ = _run(data, how)
    want, _ = _run(data, "attach")
    assert list(want.index) == [0, 1, 2, 3] and "econ_df0" in want
    for column in want.columns:
        assert got[column].equals(want[column]), column


def test_without_the_scaler_the_gradient_is_the_scaled_one(data):
    """What the scaler= argument prevents: a blind walk sees 1024 g."""
    blind, _ = _run(data, "blind")
    want, _ = _run(data, "attach")
    ratio = blind.loc[0, "grad_norm"] / want.loc[0, "grad_norm"]
    assert ratio == pytest.approx(SCALE, rel=1e-6)


def test_a_step_the_scaler_skips_is_not_a_walk_step(data):
    got, walk = _run(data, "hand", poison_step=1)
    want, attached = _run(data, "attach", poison_step=1)
    assert walk.step_count == attached.step_count == 3
    assert list(got.index) == list(want.index) == [0, 1, 2]
    for column in want.columns:
        assert got[column].equals(want[column]), column


def test_a_scaler_without_its_optimizer_is_a_one_line_error(data):
    x, y = data
    model = _model()
    scaler = torch.amp.GradScaler("cpu", init_scale=SCALE)
    scaler.scale(F.cross_entropy(model(x), y)).backward()
    with pytest.raises(ConfigError, match=r"expected optimizer= with scaler="):
        Walk(model, PROBES).before_step(0.0, (x, y), scaler=scaler)
