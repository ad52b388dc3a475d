"""LossEvaluator: Hessian-vector products against autograd's full Hessian, the three BN
policies against direct computations, exact line ends, and an untouched model.

Float64 throughout; HVP tolerances 1e-10 relative (two different orders of summation).
"""

import copy

import pytest
import torch
import torch.nn as nn

from sgdwalk.functional.flat import ParamLayout
from sgdwalk.losses import cross_entropy
from sgdwalk.probes.batch import Pairs
from sgdwalk.probes.evaluator import LossEvaluator


def _setup(kit, batchnorm, n=24, chunk=8):
    model = kit.tiny_mlp(batchnorm=batchnorm)
    x, y = kit.classification_data(n=n)
    chunks = list(zip(x.split(chunk), y.split(chunk)))
    theta = kit.flat_params(model)
    return model, chunks, theta


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("chunk", [24, 8])
def test_hvp_matches_the_full_autograd_hessian(kit, batchnorm, chunk):
    model, chunks, theta = _setup(kit, batchnorm, chunk=chunk)
    ev = LossEvaluator(model, ParamLayout.of(model))
    H = torch.autograd.functional.hessian(kit.hand_mlp_loss(model, chunks), theta)
    v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(3),
                    dtype=torch.float64)
    g, hv = ev.hessian(chunks, theta).gradient_and_matvec(v)
    g_ref = torch.autograd.functional.jacobian(kit.hand_mlp_loss(model, chunks), theta)
    torch.testing.assert_close(hv, H @ v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
    # the one-graph loss function agrees with the chunked accumulation
    f = ev.loss_function(chunks)
    assert float(f(theta)) == pytest.approx(float(kit.hand_mlp_loss(model, chunks)(theta)),
                                            rel=1e-12)


def test_forward_mode_slope_and_group_gradients(kit):
    model, chunks, theta = _setup(kit, batchnorm=True)
    ev = LossEvaluator(model, ParamLayout.of(model))
    f = kit.hand_mlp_loss(model, chunks)
    v = torch.linspace(-1, 1, theta.numel(), dtype=torch.float64)
    value, slope = ev.directional_derivative(chunks, theta, v)
    g = torch.autograd.functional.jacobian(f, theta)
    assert value == pytest.approx(float(f(theta)), rel=1e-12)
    assert slope == pytest.approx(float(g @ v), rel=1e-10)
    groups = [chunks[:1], chunks[1:]]
    G = ev.gradients(groups, theta)
    for row, group in zip(G, groups):
        ref = torch.autograd.functional.jacobian(kit.hand_mlp_loss(model, group), theta)
        torch.testing.assert_close(row, ref, rtol=1e-10, atol=1e-12)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("policy", ["batch", "recalibrate", "eval"])
def test_probing_leaves_the_model_untouched(kit, policy):
    model, chunks, theta = _setup(kit, batchnorm=True)
    model.train()
    with torch.no_grad():  # give the running statistics non-default values
        model(chunks[0][0] * 3 + 1)
    before = _state(model)
    ev = LossEvaluator(model, ParamLayout.of(model), bn_policy=policy)
    u = torch.ones_like(theta) * 0.01
    ev.line(theta, u, [-0.5, 0.0, 1.0, 2.0], chunks, end=theta + u)
    ev.hessian(chunks, theta).gradient_and_matvec(u)
    ev.directional_derivative(chunks, theta, u)
    ev.gradients([chunks], theta)
    after = _state(model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training and all(m.training for m in model.modules())
    assert model[1].track_running_stats and model[1].momentum == 0.1


def test_batch_policy_is_the_training_forward_bit_for_bit(kit):
    model, chunks, theta = _setup(kit, batchnorm=True)
    ev = LossEvaluator(model, ParamLayout.of(model), bn_policy="batch")
    twin = copy.deepcopy(model).train()
    with torch.no_grad():
        expected = torch.cat([cross_entropy(twin(x), y) for x, y in chunks])
    assert torch.equal(ev.losses(chunks, theta), expected)
    assert ev.reproduces_training_forward


def test_eval_policy_uses_the_current_running_statistics(kit):
    model, chunks, theta = _setup(kit, batchnorm=True)
    model.train()
    with torch.no_grad():
        model(chunks[0][0] * 2 - 1)
    ev = LossEvaluator(model, ParamLayout.of(model), bn_policy="eval")
    twin = copy.deepcopy(model).eval()
    with torch.no_grad():
        expected = torch.cat([cross_entropy(twin(x), y) for x, y in chunks])
    assert torch.equal(ev.losses(chunks, theta), expected)
    assert not ev.reproduces_training_forward


def test_recalibrate_policy_recomputes_statistics_at_each_point(kit):
    model, chunks, theta = _setup(kit, batchnorm=True)
    ev = LossEvaluator(model, ParamLayout.of(model), bn_policy="recalibrate")
    u = torch.linspace(-0.3, 0.3, theta.numel(), dtype=torch.float64)
    got = ev.line(theta, u, [0.0, 0.7], chunks)
    for row, a in zip(got, (0.0, 0.7)):
        twin = copy.deepcopy(model)
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(theta + a * u, twin.parameters())
            bn = twin[1]
            bn.reset_running_stats()
            bn.momentum = None  # cumulative mean over the chunks
            twin.train()
            for x, _ in chunks:
                twin(x)
            twin.eval()
            expected = torch.cat([cross_entropy(twin(x), y) for x, y in chunks])
        torch.testing.assert_close(row, expected, rtol=1e-12, atol=1e-14)


def test_line_ends_are_exactly_theta_and_theta_next(kit):
    model, chunks, theta = _setup(kit, batchnorm=True)
    ev = LossEvaluator(model, ParamLayout.of(model))
    theta_next = theta - 0.37 * torch.linspace(-1, 1, theta.numel(), dtype=torch.float64)
    u = theta_next - theta
    rows = ev.line(theta, u, [-0.25, 0.0, 0.5, 1.0, 1.25], chunks, end=theta_next)
    assert torch.equal(rows[1], ev.losses(chunks, theta))
    assert torch.equal(rows[4 - 1], ev.losses(chunks, theta_next))
    # without `end`, interior points are theta + a u
    torch.testing.assert_close(ev.line(theta, u, [0.5], chunks)[0], rows[2], rtol=1e-12,
                               atol=0)


def test_dropout_is_off_while_probing(kit):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 3)).double().train()
    x, y = kit.classification_data()
    ev = LossEvaluator(model, ParamLayout.of(model))
    theta = kit.flat_params(model)
    assert torch.equal(ev.losses([(x, y)], theta), ev.losses([(x, y)], theta))
    assert not ev.reproduces_training_forward
    with torch.no_grad():
        expected = cross_entropy(model.eval()(x), y)
    assert torch.equal(ev.losses([(x, y)], theta), expected)


def test_unknown_policy_is_refused(kit):
    from sgdwalk.errors import ConfigError

    model = kit.tiny_mlp()
    with pytest.raises(ConfigError, match="bn_policy"):
        LossEvaluator(model, ParamLayout.of(model), bn_policy="train")


def test_loss_applied_once_or_per_chunk_gives_the_same_curve(kit):
    """The default loss is applied once to all points' logits; any other loss per chunk."""
    model, chunks, theta = _setup(kit, batchnorm=True)
    u = torch.linspace(-0.2, 0.2, theta.numel(), dtype=torch.float64)
    once = LossEvaluator(model, ParamLayout.of(model))
    per_chunk = LossEvaluator(model, ParamLayout.of(model),
                              batches=Pairs(lambda z, y: cross_entropy(z, y)))
    grid = [-0.25, 0.0, 0.5, 1.0]
    torch.testing.assert_close(once.line(theta, u, grid, chunks),
                               per_chunk.line(theta, u, grid, chunks), rtol=1e-14, atol=0)


def test_tied_parameters_move_together(kit):
    """A weight shared by two layers is one entry of the layout and moves in both."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Tanh(), nn.Linear(4, 4)).double()
    model[2].weight = model[0].weight
    layout = ParamLayout.of(model)
    assert layout.names == ("0.weight", "2.bias")
    x, y = kit.classification_data(n=10, d_in=4, classes=4)
    theta = kit.flat_params(model)
    moved = theta + 0.5
    ev = LossEvaluator(model, layout)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(moved, twin.parameters())
        expected = cross_entropy(twin(x), y)
    assert torch.equal(ev.losses([(x, y)], moved), expected)
    f_twin = float(expected.mean())
    assert float(ev.loss_function([(x, y)])(moved)) == pytest.approx(f_twin, rel=1e-12)


def test_a_batched_mse_sweep_with_target_rows_equals_chunk_by_chunk(monkeypatch):
    """mse is row-wise: a sweep stacks all points' outputs and repeats the targets along
    rows, which (N, D) targets need as much as (N,) labels; equal to the sweep chunk by
    chunk and to the written-out squared errors."""
    import sgdwalk.probes.evaluator as evaluator
    from sgdwalk.losses import mse
    from sgdwalk.probes.batch import Pairs

    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    layout = ParamLayout.of(model)
    x, y = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, 2, dtype=torch.float64)
    chunks = [(x[:4], y[:4]), (x[4:], y[4:])]
    ev = LossEvaluator(model, layout, batches=Pairs(mse))
    w, b = model.weight.detach().clone(), model.bias.detach().clone()
    theta = torch.cat([w.reshape(-1), b])
    u = torch.linspace(-1, 1, theta.numel(), dtype=torch.float64)
    grid = [-0.5, 0.0, 1.0, 2.0]
    batched = ev.line(theta, u, grid, chunks)
    monkeypatch.setattr(evaluator, "_BATCHED_LOSS_MAX", 0)  # forces chunk by chunk
    chunked = ev.line(theta, u, grid, chunks)
    torch.testing.assert_close(batched, chunked, rtol=1e-12, atol=0)
    for k, a in enumerate(grid):
        wa, ba = w + a * u[:6].view(2, 3), b + a * u[6:]
        expected = ((x @ wa.T + ba - y) ** 2).mean(dim=1)
        torch.testing.assert_close(batched[k], expected, rtol=1e-12, atol=1e-15)
