"""The walk's weight decay per parameter, from the optimizer's param groups: the trajectory's
g + wd theta against a float64 reference with each group's wd, and AdamW's decoupled decay
as torch applied it (tiny GPT, float64: nanoGPT's two groups, and a user's own groups)."""

import numpy as np
import pytest
import torch

from sgdwalk.config import OptimConfig
from sgdwalk.losses import sequence_cross_entropy
from sgdwalk.probes.base import Probe
from sgdwalk.probes.precond_sharpness import adam_preconditioner
from sgdwalk.probes.trajectory import Trajectory
from sgdwalk.probes.walk import Walk
from sgdwalk.train.optim import make_optimizer

WD, LR = 0.5, 0.05


class Capture(Probe):
    """Keeps what the step context held (copies) at every step."""

    name = "capture"
    tracks_history = True

    def __init__(self):
        super().__init__()
        self.seen = []

    def observe(self, ctx):
        self.seen.append((ctx.weight_decays, ctx.lr, ctx.theta.clone(), ctx.update.clone()))
        return {}


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _train(kit, model, opt, walk, steps, hooks=None):
    """`steps` AdamW/SGD steps on sequences; (thetas, grads) as float64 NumPy arrays."""
    thetas, grads = [], []
    for t in range(steps):
        x, y = kit.sequences(6, seed=t)
        opt.zero_grad()
        loss = sequence_cross_entropy(model(x), y).mean()
        loss.backward()
        thetas.append(kit.flat_params(model).numpy().copy())
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy())
        if hooks is not None:
            hooks.record(loss.detach(), (x, y))
        else:
            walk.before_step(loss.detach(), (x, y))
        opt.step()
        if hooks is None:
            walk.after_step(opt)
    return thetas, grads


def _wd_vector(walk, wds):
    """The flat vector of per-parameter decays `wds` (layout order) in float64."""
    out = np.empty(walk.layout.numel)
    for (a, b), wd in zip(walk.layout.bounds, wds):
        out[a:b] = wd
    return out


@pytest.mark.parametrize("optimizer", ["AdamW", "SGD"])
def test_nanogpt_groups_give_each_parameter_its_decay_in_cos_grad_wd(kit, optimizer):
    """optim.weight_decay_on = "matrices": the walk reads wd for the 2-d tensors and 0 for
    biases and LayerNorm, and cos_grad_wd equals cos(g + wd theta) with that vector to 1e-12;
    the first group's wd on every parameter (the one-number reading) is off by far more."""
    model = kit.tiny_gpt()
    cfg = OptimConfig(optimizer=optimizer, lr=LR, weight_decay=WD, weight_decay_on="matrices",
                      momentum=0.9 if optimizer == "SGD" else 0.0)
    opt = make_optimizer(cfg, model.parameters())
    capture = Capture()
    walk = Walk(model, [Trajectory(), capture], loss_fn=sequence_cross_entropy)
    thetas, grads = _train(kit, model, opt, walk, steps=4)
    expected = tuple(WD if p.dim() >= 2 else 0.0 for p in model.parameters())
    assert 0 < sum(wd == 0 for wd in expected) < len(expected)
    assert all(seen[0] == expected for seen in capture.seen)
    wd = _wd_vector(walk, expected)
    rows = [v for s, v in walk.rows if s >= 0]
    for t in range(1, 4):
        exact = _cos(grads[t - 1] + wd * thetas[t - 1], grads[t] + wd * thetas[t])
        one = _cos(grads[t - 1] + WD * thetas[t - 1], grads[t] + WD * thetas[t])
        assert rows[t]["cos_grad_wd"] == pytest.approx(exact, rel=1e-12)
        assert abs(one - exact) > 1e-4  # the test tells the two readings apart


def test_adamw_decoupled_decay_as_applied_is_each_groups_wd(kit):
    """u_t = -lr P^-1 m_t - lr wd_i theta_t entry by entry (torch's AdamW step, to 1e-10),
    with wd_i the walk's per-parameter decay; the exempt group's entries carry no decay."""
    model = kit.tiny_gpt(seed=1)
    cfg = OptimConfig(optimizer="AdamW", lr=LR, weight_decay=WD, weight_decay_on="matrices")
    opt = make_optimizer(cfg, model.parameters())
    assert [g["weight_decay"] for g in opt.param_groups] == [WD, 0.0]
    capture = Capture()
    walk = Walk(model, [capture], loss_fn=sequence_cross_entropy)
    _train(kit, model, opt, walk, steps=3)
    wds, lr, theta, update = capture.seen[-1]
    p, _ = adam_preconditioner(opt, list(model.parameters()), theta)
    m = torch.cat([opt.state[q]["exp_avg"].reshape(-1) for q in model.parameters()])
    wd = torch.from_numpy(_wd_vector(walk, wds))
    torch.testing.assert_close(update, -lr * m / p - lr * wd * theta, rtol=1e-10, atol=1e-14)
    with pytest.raises(AssertionError):  # the first group's wd everywhere misses the step
        torch.testing.assert_close(update, -lr * m / p - lr * WD * theta, rtol=1e-10,
                                   atol=1e-14)


def test_own_groups_through_attach_and_a_changed_decay_are_read_each_step(kit):
    """A user's AdamW with three groups (one parameter left out of all: decay 0) stepped
    through `attach`; changing a group's weight_decay mid-run changes the walk's reading
    from that step on, and cos_grad_wd follows the float64 reference throughout."""
    model = kit.tiny_gpt(seed=2)
    params = list(model.parameters())
    mats = [p for p in params if p.dim() >= 2]
    vecs = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": mats[1:], "weight_decay": 0.3},
                             {"params": vecs, "weight_decay": 0.0},
                             {"params": mats[:1], "weight_decay": 0.1}], lr=LR)
    capture = Capture()
    walk = Walk(model, [Trajectory(), capture], loss_fn=sequence_cross_entropy)
    hooks = walk.attach(opt)
    thetas, grads = _train(kit, model, opt, walk, steps=2, hooks=hooks)
    opt.param_groups[2]["weight_decay"] = 0.7
    more = _train(kit, model, opt, walk, steps=2, hooks=hooks)
    hooks.remove()
    thetas, grads = thetas + more[0], grads + more[1]

    def wds(first):
        return tuple(first if p is mats[0] else 0.3 if p.dim() >= 2 else 0.0 for p in params)

    assert [seen[0] for seen in capture.seen] == [wds(0.1)] * 2 + [wds(0.7)] * 2
    rows = [v for s, v in walk.rows if s >= 0]
    for t in range(1, 4):
        prev, now = (_wd_vector(walk, capture.seen[s][0]) for s in (t - 1, t))
        exact = _cos(grads[t - 1] + prev * thetas[t - 1], grads[t] + now * thetas[t])
        assert rows[t]["cos_grad_wd"] == pytest.approx(exact, rel=1e-12)


def test_groups_with_one_decay_give_the_one_group_rows_bit_for_bit(kit):
    """Two groups with the same wd are the one-group case: every stored value is equal."""
    def run(split):
        model = kit.tiny_gpt(seed=3)
        ps = list(model.parameters())
        groups = [{"params": ps[:3]}, {"params": ps[3:]}] if split else ps
        opt = torch.optim.SGD(groups, lr=LR, momentum=0.9, weight_decay=0.1)
        walk = Walk(model, [Trajectory()], loss_fn=sequence_cross_entropy)
        _train(kit, model, opt, walk, steps=3)
        return walk.rows

    one, two = run(False), run(True)
    assert [s for s, _ in one] == [s for s, _ in two]
    for (_, a), (_, b) in zip(one, two):
        for key in a:
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)
