"""Barrier probe against a direct evaluation of the same segments (float64, 1e-12).

The loss is periodic, L(w) = mean_j 1 - cos(x_j w - y_j) with x_j ~ 1, y_j ~ 0: wells near
w = 2 pi m separated by barriers near odd multiples of pi. GD with lr 8 jumps between wells,
so segments cross real barriers (positive values) as well as valleys (negative values).
"""

import math

import pytest
import torch
import torch.nn as nn

from sgdwalk.probes.barrier import Barrier
from sgdwalk.probes.line import Line
from sgdwalk.probes.schedule import Steps
from sgdwalk.probes.walk import Walk


def periodic_loss(out, y):
    return 1.0 - torch.cos(out.squeeze(-1) - y)


def _problem(n=50, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = 1.0 + 0.1 * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    y = 0.1 * torch.randn(n, generator=gen, dtype=torch.float64)
    return X, y


def _loss(X, y, w):
    return float((1.0 - torch.cos(X @ w - y)).mean())


def _run(line_steps, steps=7, lr=8.0, ks=(1, 2), points=5):
    X, y = _problem()
    model = nn.Linear(X.shape[1], 1, bias=False).double()
    with torch.no_grad():
        model.weight.fill_(1.0)
    probes = [Line(Steps(frozenset(line_steps))), Barrier(source="probe", ks=ks, points=points)]
    walk = Walk(model, probes, loss_fn=periodic_loss, probe_set=(X, y), probe_batch=20)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    thetas = []
    for _ in range(steps):
        thetas.append(model.weight.detach().reshape(-1).clone())
        opt.zero_grad()
        loss = periodic_loss(model(X), y).mean()
        loss.backward()
        walk.before_step(loss.detach(), (X, y), full_batch=True)
        opt.step()
        walk.after_step(opt)
    thetas.append(model.weight.detach().reshape(-1).clone())
    return X, y, thetas, {s: v for s, v in walk.rows if s >= 0}, walk


def _segment(X, y, start, stop, points):
    b = torch.linspace(0, 1, points, dtype=torch.float64)
    vals = [_loss(X, y, torch.lerp(start, stop, float(bi))) for bi in b]
    i = max(range(1, points - 1), key=lambda j: vals[j])
    return vals[i] - max(vals[0], vals[-1]), float(b[i])


def test_barriers_are_those_of_the_floor_and_iterate_segments():
    line_steps = {0, 1, 2, 4, 5, 6}  # the line probe skips step 3
    X, y, thetas, rows, _ = _run(line_steps)
    floors = {
        t: thetas[t] + rows[t]["line_probe_floor_a"] * (thetas[t + 1] - thetas[t])
        for t in line_steps
    }
    seen_positive = False
    for t in range(7):
        v = rows.get(t, {})
        if t not in line_steps:
            assert not any(k.startswith(("barrier", "floor_change")) for k in v)
            continue
        for k in (1, 2):
            for path, ends in (("floor", floors), ("iter", dict(enumerate(thetas)))):
                name = f"barrier_{path}_k{k}"
                if t - k < 0 or t - k not in ends:
                    assert name not in v
                    continue
                height, pos = _segment(X, y, ends[t - k], ends[t], 5)
                assert v[name] == pytest.approx(height, rel=1e-12, abs=1e-13)
                assert v[f"{name}_pos"] == pos
                seen_positive |= height > 0
        if t - 1 in line_steps:
            expected = rows[t]["line_probe_floor_loss"] - rows[t - 1]["line_probe_floor_loss"]
            assert v["floor_change"] == pytest.approx(expected, rel=1e-12)
        else:
            assert "floor_change" not in v
    assert seen_positive  # the periodic loss really has barriers between these points
    assert "barrier_floor_k1" not in rows[4] and "barrier_floor_k2" in rows[4]


def test_ring_buffer_keeps_only_the_largest_gap():
    *_, walk = _run(set(range(7)), ks=(3, 1))
    barrier = walk.probes[1]
    assert barrier.ks == (1, 3) and barrier.floors.shape == (3, 1)
    assert sorted(barrier.iter_step) == [4, 5, 6]


def test_state_dict_round_trip_continues_identically():
    _, _, _, whole, _ = _run(set(range(7)), steps=7)
    _, _, _, _, first = _run(set(range(7)), steps=4)
    state = first.probes[1].state_dict()
    fresh = Barrier(source="probe", ks=(1, 2), points=5)
    fresh.load_state_dict(state)
    assert fresh.floor_step == first.probes[1].floor_step
    assert torch.equal(fresh.floors, first.probes[1].floors)
    assert math.isfinite(whole[6]["barrier_floor_k2"])


def test_barrier_needs_the_line_probe():
    from sgdwalk.config import WalkConfig
    from sgdwalk.errors import ConfigError
    from sgdwalk.probes.presets import build_probes

    with pytest.raises(ConfigError, match="walk.barrier"):
        build_probes(WalkConfig(preset="full", line="off"))


def test_on_the_batch_source_every_segment_is_measured_on_the_current_batch():
    """Mini-batches alternate between two halves of the data: the ends of a segment must be
    evaluated on the batch of the step that records it, not on the batch of their own step."""
    X, y = _problem(n=40)
    halves = [(X[:20], y[:20]), (X[20:], y[20:])]
    model = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        model.weight.fill_(1.0)
    probes = [Line(sources=("batch",)), Barrier(source="batch", ks=(1,), points=5)]
    walk = Walk(model, probes, loss_fn=periodic_loss)
    opt = torch.optim.SGD(model.parameters(), lr=8.0)
    thetas = []
    for t in range(4):
        xb, yb = halves[t % 2]
        thetas.append(model.weight.detach().reshape(-1).clone())
        opt.zero_grad()
        loss = periodic_loss(model(xb), yb).mean()
        loss.backward()
        walk.before_step(loss.detach(), (xb, yb))
        opt.step()
        walk.after_step(opt)
    thetas.append(model.weight.detach().reshape(-1).clone())
    rows = {s: v for s, v in walk.rows if s >= 0}
    for t in range(1, 4):
        xb, yb = halves[t % 2]
        floors = [thetas[s] + rows[s]["line_batch_floor_a"] * (thetas[s + 1] - thetas[s])
                  for s in (t - 1, t)]
        height, pos = _segment(xb, yb, floors[0], floors[1], 5)
        assert rows[t]["barrier_floor_k1"] == pytest.approx(height, rel=1e-12, abs=1e-13)
        height, pos = _segment(xb, yb, thetas[t - 1], thetas[t], 5)
        assert rows[t]["barrier_iter_k1"] == pytest.approx(height, rel=1e-12, abs=1e-13)
