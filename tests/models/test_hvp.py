"""Second derivatives flow through every model: double-backward and forward-over-reverse
Hessian-vector products agree with a central difference of gradients (float64)."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, jvp

from sgdwalk.config import ModelConfig
from sgdwalk.models import build_model

# torch.func.jvp loads torch's own jit-scripted decompositions on first use
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script`:DeprecationWarning")

TINY = {
    "mlp": (ModelConfig(name="mlp", widths=(6, 5)), (1, 4, 4)),
    "vgg11": (ModelConfig(name="vgg11", width_mult=1 / 32), (3, 32, 32)),
    "resnet": (ModelConfig(name="resnet", depth=8, width_mult=0.25), (3, 8, 8)),
}


def problem(name):
    """A float64 model in train mode (BN batch statistics), a batch and a loss of params.

    Buffers are cloned per call so the running statistics never change while probing.
    """
    cfg, shape = TINY[name]
    torch.manual_seed(0)
    model = build_model(cfg, shape, 3).double()
    x = torch.randn(8, *shape, dtype=torch.float64)
    y = torch.arange(8) % 3
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    params = {k: p.detach().clone() for k, p in model.named_parameters()}

    def loss(p):
        fresh = {k: b.clone() for k, b in buffers.items()}
        return F.cross_entropy(functional_call(model, (p, fresh), (x,)), y)

    return model, params, buffers, loss


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors.values()])


@pytest.mark.parametrize("name", list(TINY))
def test_hessian_vector_product_matches_finite_difference(name):
    model, params, buffers, loss = problem(name)
    gen = torch.Generator().manual_seed(1)
    v = {k: torch.randn(p.shape, dtype=p.dtype, generator=gen) for k, p in params.items()}

    # double backward
    leaves = {k: p.clone().requires_grad_(True) for k, p in params.items()}
    g = torch.autograd.grad(loss(leaves), list(leaves.values()), create_graph=True)
    dot = sum((gi * v[k]).sum() for gi, k in zip(g, leaves))
    hv = dict(zip(leaves, torch.autograd.grad(dot, list(leaves.values()))))

    # forward over reverse
    _, hv_fwd = jvp(grad(loss), (params,), (v,))

    # central difference of gradients; ReLU/max-pool kinks are not crossed at this eps
    eps = 1e-6
    plus = grad(loss)({k: p + eps * v[k] for k, p in params.items()})
    minus = grad(loss)({k: p - eps * v[k] for k, p in params.items()})
    fd = (flat(plus) - flat(minus)) / (2 * eps)

    hv, hv_fwd = flat(hv), flat(hv_fwd)
    assert torch.isfinite(hv).all()
    assert hv.norm() > 1e-3  # the check is not vacuous
    torch.testing.assert_close(hv_fwd, hv, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(hv, fd, rtol=1e-5, atol=1e-6 * fd.abs().max().item())
    # probing left the running statistics alone
    assert all(torch.equal(b, buffers[k]) for k, b in model.named_buffers())
