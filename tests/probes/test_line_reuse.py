"""The line probe reuses the previous step's a = 1 losses as a = 0 on a fixed source: the
rows are bit for bit those of measuring every point, and it is only done when the point is
exactly the same and the BN policy makes the losses depend on the parameters alone."""

import pytest
import torch
import torch.nn as nn

from sgdwalk.probes.line import Line
from sgdwalk.probes.walk import Walk


class Forgetful(Line):
    """A line probe that never reuses: every point measured at every step."""

    def _known_start(self, ctx, source):
        return None


def _conv_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def _run(make, probe, x, y, probe_set, steps=5, bn_policy="batch", poke=None):
    torch.manual_seed(0)
    model = make()
    walk = Walk(model, [probe], probe_set=probe_set, heldout=probe_set, probe_batch=16,
                bn_policy=bn_policy)
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    for t in range(steps):
        xb, yb = x[t * 8 : t * 8 + 8], y[t * 8 : t * 8 + 8]
        walk.step(opt, xb, yb)
        if poke is not None and t == 1:
            with torch.no_grad():  # parameters changed between two steps, outside the walk
                next(model.parameters()).mul_(1.01)
    return [v for s, v in walk.rows if s >= 0]


@pytest.mark.parametrize("net", ["mlp", "conv"])
@pytest.mark.parametrize("policy", ["batch", "recalibrate", "eval"])
def test_reused_start_gives_the_rows_of_measuring_every_point(kit, net, policy):
    if net == "mlp":
        x, y = kit.classification_data(n=72)
        x, y = x.float(), y

        def make():
            return nn.Sequential(nn.Linear(x.shape[1], 8), nn.BatchNorm1d(8), nn.Tanh(),
                                 nn.Linear(8, 3))
    else:
        gen = torch.Generator().manual_seed(2)
        x, y = torch.randn(72, 3, 8, 8, generator=gen), torch.randint(0, 3, (72,), generator=gen)
        make = _conv_net
    probe_set = (x[40:], y[40:])
    sources = ("probe", "heldout", "batch")
    reused = Line(sources=sources)
    rows = _run(make, reused, x, y, probe_set, bn_policy=policy)
    fresh = _run(make, Forgetful(sources=sources), x, y, probe_set, bn_policy=policy)
    assert len(rows) == len(fresh) == 5
    for a, b in zip(rows, fresh):
        assert a.keys() == b.keys()
        for k in a:
            va, vb = a[k], b[k]
            same = torch.equal(va, vb) if isinstance(va, torch.Tensor) else (
                va == vb or (va != va and vb != vb))
            assert same, k
    assert ("probe" in reused._ends) == (policy != "eval")


def test_no_reuse_when_the_parameters_moved_outside_the_walk(kit):
    x, y = kit.classification_data(n=72)
    x = x.float()

    def make():
        return nn.Sequential(nn.Linear(x.shape[1], 8), nn.Tanh(), nn.Linear(8, 3))

    probe_set = (x[40:], y[40:])
    rows = _run(make, Line(sources=("probe",)), x, y, probe_set, poke=True)
    fresh = _run(make, Forgetful(sources=("probe",)), x, y, probe_set, poke=True)
    for a, b in zip(rows, fresh):
        assert torch.equal(a["line_probe"], b["line_probe"])
    # the poked step's f(0) is the loss at the poked parameters, not the previous f(1)
    line = Line()
    assert rows[2]["line_probe"][line.i0] != rows[1]["line_probe"][line.i1]
    assert rows[3]["line_probe"][line.i0] == rows[2]["line_probe"][line.i1]  # reused again
