"""Hessian-vector products against the full autograd Hessian (float64, tolerance 1e-10
relative to ||H v||), and curvature along a step against the quadratic's closed form."""

from __future__ import annotations

import math

import pytest
import torch

from sgdwalk.functional import (
    GradientGraph,
    directional_curvature,
    grad_and_hvp,
    hvp,
    predicted_floor,
)

# torch.func.jvp loads torch's own jit-scripted decompositions on first use
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script`:DeprecationWarning")

METHODS = ["reverse", "forward"]


@pytest.mark.parametrize("method", METHODS)
def test_hvp_matches_the_full_hessian_of_a_tanh_mlp(tiny_mlp, method):
    H = torch.autograd.functional.hessian(tiny_mlp.loss, tiny_mlp.theta)
    assert H.shape == (tiny_mlp.P, tiny_mlp.P)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        v = torch.randn(tiny_mlp.P, generator=gen, dtype=torch.float64)
        g, hv = grad_and_hvp(tiny_mlp.loss, tiny_mlp.theta, v, method=method)
        exact = H @ v
        assert torch.linalg.vector_norm(hv - exact) <= 1e-10 * torch.linalg.vector_norm(exact)
        x = tiny_mlp.theta.clone().requires_grad_(True)
        (g_exact,) = torch.autograd.grad(tiny_mlp.loss(x), x)
        assert torch.allclose(g, g_exact, rtol=1e-12, atol=1e-14)
        assert not hv.requires_grad and not g.requires_grad
    assert not tiny_mlp.theta.requires_grad  # the point is left as it was


def test_gradient_graph_products_match_the_full_hessian_of_a_tanh_mlp(tiny_mlp):
    H = torch.autograd.functional.hessian(tiny_mlp.loss, tiny_mlp.theta)
    # L split into two terms (as chunks are): 0.3 L + 0.7 L
    terms = [lambda t: 0.3 * tiny_mlp.loss(t), lambda t: 0.7 * tiny_mlp.loss(t)]
    gen = torch.Generator().manual_seed(0)
    with GradientGraph(terms, tiny_mlp.theta) as op:
        g_exact, _ = grad_and_hvp(tiny_mlp.loss, tiny_mlp.theta, tiny_mlp.theta)
        assert torch.allclose(op.gradient, g_exact, rtol=1e-12, atol=1e-14)
        for _ in range(4):  # every product after the first through the same kept graph
            v = torch.randn(tiny_mlp.P, generator=gen, dtype=torch.float64)
            hv = op @ v
            exact = H @ v
            assert torch.linalg.vector_norm(hv - exact) <= 1e-10 * torch.linalg.vector_norm(
                exact)
            assert not hv.requires_grad
        assert op.n_matvec == 4
    with pytest.raises(RuntimeError, match="closed"):
        op @ v
    assert not tiny_mlp.theta.requires_grad


def test_gradient_graph_of_a_linear_loss_is_zero():
    w = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    with GradientGraph([lambda t: (t * w).sum()], torch.zeros(3, dtype=torch.float64)) as op:
        assert torch.equal(op.gradient, w)
        assert torch.equal(op @ torch.ones(3, dtype=torch.float64), torch.zeros(3,
                                                                               dtype=torch.float64))


def test_both_methods_agree_and_accept_float32(tiny_mlp):
    v = torch.linspace(-1, 1, tiny_mlp.P, dtype=torch.float64)
    a = hvp(tiny_mlp.loss, tiny_mlp.theta, v, method="reverse")
    b = hvp(tiny_mlp.loss, tiny_mlp.theta, v, method="forward")
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
    h32 = hvp(lambda t: tiny_mlp.loss(t.double()), tiny_mlp.theta.float(), v.float())
    assert h32.dtype == torch.float32
    assert torch.allclose(h32.double(), a, rtol=1e-4, atol=1e-5)


def test_hvp_validates_its_arguments(tiny_mlp):
    with pytest.raises(ValueError, match="method"):
        hvp(tiny_mlp.loss, tiny_mlp.theta, tiny_mlp.theta, method="finite-difference")
    with pytest.raises(ValueError, match="same shape"):
        hvp(tiny_mlp.loss, tiny_mlp.theta, tiny_mlp.theta[:-1])


@pytest.mark.parametrize("method", METHODS)
def test_curvature_along_a_gd_step_on_a_quadratic(quadratic, method):
    theta = quadratic.c + 1.0
    g = quadratic.grad(theta)
    lr = 0.05
    u = -lr * g
    kappa, uhu = directional_curvature(quadratic.loss, theta, u, method=method)
    exact = quadratic.line(theta, u)
    assert uhu == pytest.approx(exact["uAu"], rel=1e-12)
    assert kappa == pytest.approx(exact["curv_along"], rel=1e-12)
    # for GD the floor is at 1 / (lr kappa), and the quadratic model predicts it exactly
    a_star = predicted_floor(float(g @ u), uhu)
    assert a_star == pytest.approx(1.0 / (lr * kappa), rel=1e-12)
    assert a_star == pytest.approx(exact["floor_a"], rel=1e-12)


def test_curvature_along_eigenvectors_of_an_indefinite_quadratic(indefinite_quadratic):
    q = indefinite_quadratic
    for i in range(q.lams.numel()):
        kappa, _ = directional_curvature(q.loss, q.c, 2.0 * q.Q[:, i])
        assert kappa == pytest.approx(float(q.lams[i]), rel=1e-12)
    assert math.isnan(directional_curvature(q.loss, q.c, torch.zeros_like(q.c))[0])


def test_predicted_floor_needs_positive_curvature():
    assert predicted_floor(-2.0, 4.0) == 0.5
    assert math.isnan(predicted_floor(-2.0, 0.0))
    assert math.isnan(predicted_floor(-2.0, -1.0))
    assert math.isnan(predicted_floor(math.nan, 1.0))


def _conv_bn_net() -> torch.nn.Module:
    """Conv -> BN -> tanh -> Linear, float64: a conv weight and a Linear weight (saved by
    autograd as a transposed view) among the saved parameters; 303 parameters."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.BatchNorm2d(3), torch.nn.Tanh(),
        torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5)).double()


def test_step_graph_products_are_the_hessian_at_theta_t_after_an_in_place_step():
    """The step's graph kept through `StepGraph`, the parameters then moved in place by SGD
    with momentum and weight decay: H v is autograd's full Hessian at theta_t (not
    theta_{t+1}) times v to 1e-10 relative, and the gradient is backward()'s bit for bit."""
    from torch.func import functional_call

    from sgdwalk.functional import StepGraph
    from sgdwalk.functional.flat import ParamLayout

    net = _conv_bn_net()
    twin = _conv_bn_net()  # the same initialisation: the plain backward's reference
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 2, 4, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (6,), generator=gen)
    params = list(net.parameters())
    opt = torch.optim.SGD(params, lr=0.3, momentum=0.9, weight_decay=0.1)
    graph = StepGraph(params)
    for _step in range(2):  # the second step has momentum: u is not a multiple of g
        theta_t = torch.cat([p.detach().reshape(-1) for p in params])
        opt.zero_grad(set_to_none=True)
        with graph.recording():
            grads = graph.gradient(torch.nn.functional.cross_entropy(net(x), y))
        for p, g in zip(params, grads):
            p.grad = g
        twin.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(twin(x), y).backward()
        assert all(torch.equal(p.grad, q.grad) for p, q in zip(params, twin.parameters()))
        graph.freeze()
        opt.step()
        with torch.no_grad():
            for p, q in zip(params, twin.parameters()):
                q.copy_(p)  # the twin follows (its BN statistics saw the same batches)
        assert not torch.equal(torch.cat([p.detach().reshape(-1) for p in params]), theta_t)
        views = ParamLayout.of(net).views
        probe = _conv_bn_net()
        for m in probe.modules():  # batch statistics, as the step's forward used
            if isinstance(m, torch.nn.BatchNorm2d):
                m.track_running_stats = False

        def loss(flat, probe=probe, views=views):
            return torch.nn.functional.cross_entropy(functional_call(probe, views(flat), (x,)),
                                                     y)

        H = torch.autograd.functional.hessian(loss, theta_t)
        for _ in range(2):  # the graph is kept for more than one product
            v = torch.randn(theta_t.numel(), generator=gen, dtype=torch.float64)
            exact = H @ v
            hv = graph @ v
            assert torch.linalg.vector_norm(hv - exact) <= 1e-10 * torch.linalg.vector_norm(
                exact)
        graph.close()  # the same object records the next step
        with pytest.raises(RuntimeError, match="closed"):
            graph @ v


@pytest.mark.parametrize("change", ["activation", "parameter before freeze"])
def test_step_graph_refuses_a_saved_tensor_changed_in_place(change):
    """Under its saved-tensor hooks autograd checks no versions; StepGraph does: an
    activation changed after it was saved, or a parameter moved before `freeze`, raises
    instead of giving a product at the wrong point."""
    from sgdwalk.functional import StepGraph

    w = torch.tensor([[0.5, -1.0], [2.0, 0.3]], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    graph = StepGraph([w])
    with graph.recording():
        h = torch.tanh(x @ (w * w))  # w * w saves w; tanh saves its output h
        graph.gradient((h ** 3).sum())
    with torch.no_grad():
        if change == "activation":
            h.mul_(2.0)
            graph.freeze()
        else:
            w.add_(1.0)
            graph.freeze()
    with pytest.raises(RuntimeError, match="modified in place"):
        graph @ torch.ones(4, dtype=torch.float64)
