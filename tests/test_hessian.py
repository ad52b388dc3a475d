"""The Hessian operator against exact answers: on least squares, H = X^T X / n and the
gradient X^T (X w - y) / n in closed form (float64, 1e-12 relative); on a tanh network,
autograd's full Hessian of the mean loss (1e-10); chunking changes only round-off."""

import pytest
import torch
import torch.nn as nn
from torch.func import functional_call

from sgdwalk.errors import ConfigError
from sgdwalk.hessian import Hessian
from sgdwalk.losses import cross_entropy


def half_squared_error(out, y):
    return 0.5 * (out.squeeze(-1) - y) ** 2


def _least_squares(n=30, P=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, P, generator=gen, dtype=torch.float64) * torch.linspace(1, 3, P,
                                                                               dtype=torch.float64)
    y = torch.randn(n, generator=gen, dtype=torch.float64)
    w = torch.randn(P, generator=gen, dtype=torch.float64)
    model = nn.Linear(P, 1, bias=False).double()
    return model, X, y, w, gen


@pytest.mark.parametrize("chunk", [30, 7])
def test_least_squares_hessian_and_gradient_in_closed_form(chunk):
    model, X, y, w, gen = _least_squares()
    data = list(zip(X.split(chunk), y.split(chunk)))
    before = model.weight.detach().clone()
    H = Hessian.of_module(model, half_squared_error, w, data)
    assert H.shape == (5, 5) and H.n == 30
    v = torch.randn(5, generator=gen, dtype=torch.float64)
    exact_h = X.T @ X / 30
    exact_g = X.T @ (X @ w - y) / 30
    g, hv = H.gradient_and_matvec(v)
    torch.testing.assert_close(hv, exact_h @ v, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(H @ v, hv, rtol=0, atol=0)
    torch.testing.assert_close(g, exact_g, rtol=1e-12, atol=1e-14)
    with H.kept() as op:
        torch.testing.assert_close(op @ v, exact_h @ v, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(op @ (2 * v), exact_h @ (2 * v), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(op.gradient, exact_g, rtol=1e-12, atol=1e-14)
    g_alone, value = H.gradient_and_loss()
    torch.testing.assert_close(g_alone, exact_g, rtol=1e-12, atol=1e-14)
    assert value == pytest.approx(float(0.5 * ((X @ w - y) ** 2).mean()), rel=1e-12)
    assert not hv.requires_grad and not g.requires_grad and not w.requires_grad
    assert torch.equal(model.weight.detach(), before)  # reparametrised, never written


def test_tanh_network_matches_autograds_full_hessian():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (16,), generator=gen)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def mean_loss(flat):
        params, i = {}, 0
        for name, shape in zip(names, shapes):
            params[name] = flat[i : i + shape.numel()].reshape(shape)
            i += shape.numel()
        return cross_entropy(functional_call(model, params, (x,)), y).mean()

    full = torch.autograd.functional.hessian(mean_loss, theta)
    H = Hessian.of_module(model, cross_entropy, theta, list(zip(x.split(5), y.split(5))))
    for seed in range(3):
        v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)
        got = H @ v
        assert torch.linalg.vector_norm(got - full @ v) <= 1e-10 * torch.linalg.vector_norm(
            full @ v)
    with H.kept() as op:  # the chunks' graphs kept: one backward per product, same H
        for seed in range(3):
            v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(seed),
                            dtype=torch.float64)
            got = op @ v
            assert torch.linalg.vector_norm(got - full @ v) <= 1e-10 * torch.linalg.vector_norm(
                full @ v)
        torch.testing.assert_close(op.gradient, H.gradient_and_loss()[0], rtol=1e-12,
                                   atol=1e-14)


def test_a_reduced_loss_is_refused():
    model, X, y, w, _ = _least_squares()
    H = Hessian.of_module(model, lambda out, t: half_squared_error(out, t).mean(), w, [(X, y)])
    with pytest.raises(ConfigError, match="per-example losses"):
        H @ w
