"""Oracle problems for the functional tests: everything here has a closed-form answer.

`Quadratic`: L(theta) = 0.5 (theta - c)^T A (theta - c) + b0 with A = Q diag(lams) Q^T.
Along any line the loss is an exact parabola, f(a) = L0 + a <g, u> + a^2 u^T A u / 2, so
the floor, its loss, the height, alpha and the curvature are known exactly, and the
eigenvalues of the Hessian are `lams`.

`tiny_mlp`: a 2-layer tanh MLP with a cross-entropy loss written as a function of one flat
float64 parameter vector, whose full Hessian autograd gives exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor


@dataclass(frozen=True)
class Quadratic:
    A: Tensor  # (P, P) symmetric
    c: Tensor  # (P,) centre (the minimum when A is SPD)
    b0: float  # loss at the centre
    lams: Tensor  # (P,) eigenvalues of A, descending
    Q: Tensor  # (P, P) eigenvectors of A as columns, in the order of lams

    def loss(self, theta: Tensor) -> Tensor:
        d = theta - self.c
        return 0.5 * d @ (self.A @ d) + self.b0

    def grad(self, theta: Tensor) -> Tensor:
        return self.A @ (theta - self.c)

    def line(self, theta: Tensor, u: Tensor) -> dict[str, float]:
        """Closed forms of the line curve f(a) = L(theta + a u), for u^T A u > 0."""
        L0 = float(self.loss(theta))
        gu = float(self.grad(theta) @ u)
        uau = float(u @ self.A @ u)
        a_star = -gu / uau
        F = L0 - gu * gu / (2 * uau)
        f1 = L0 + gu + 0.5 * uau
        return {
            "f0": L0,
            "f1": f1,
            "gu": gu,
            "uAu": uau,
            "floor_a": a_star,
            "floor_loss": F,
            "height": L0 - F,
            "height_end": f1 - F,
            "curv_along": uau / float(u @ u),
        }

    def values(self, theta: Tensor, u: Tensor, grid: Tensor) -> Tensor:
        return torch.stack([self.loss(theta + float(a) * u) for a in grid])


def make_quadratic(lams, seed: int = 0, b0: float = 0.5) -> Quadratic:
    gen = torch.Generator().manual_seed(seed)
    lams = torch.as_tensor(lams, dtype=torch.float64)
    lams, _ = lams.sort(descending=True)
    P = lams.numel()
    Q, _ = torch.linalg.qr(torch.randn(P, P, generator=gen, dtype=torch.float64))
    A = Q @ torch.diag(lams) @ Q.T
    A = 0.5 * (A + A.T)
    c = torch.randn(P, generator=gen, dtype=torch.float64)
    return Quadratic(A=A, c=c, b0=b0, lams=lams, Q=Q)


@pytest.fixture
def quadratic_factory():
    """`make_quadratic(lams, seed=0, b0=0.5) -> Quadratic`, for tests that build their own."""
    return make_quadratic


@pytest.fixture
def quadratic() -> Quadratic:
    """SPD, condition number 100."""
    return make_quadratic([10.0, 5.0, 3.0, 2.0, 1.0, 0.5, 0.2, 0.1])


@pytest.fixture
def indefinite_quadratic() -> Quadratic:
    return make_quadratic([4.0, 2.5, 1.0, -0.5, -3.0, 0.3], seed=1)


@dataclass(frozen=True)
class TinyMLP:
    loss: callable  # flat (P,) float64 -> scalar
    theta: Tensor  # (P,) a generic point
    P: int


@pytest.fixture
def tiny_mlp() -> TinyMLP:
    """5 -> 4 (tanh) -> 3, cross-entropy on 7 fixed examples; P = 39, float64."""
    gen = torch.Generator().manual_seed(3)
    d_in, h, k, n = 5, 4, 3, 7
    x = torch.randn(n, d_in, generator=gen, dtype=torch.float64)
    y = torch.arange(n) % k
    shapes = [(h, d_in), (h,), (k, h), (k,)]
    sizes = [torch.Size(s).numel() for s in shapes]

    def loss(theta: Tensor) -> Tensor:
        W1, b1, W2, b2 = (t.view(s) for t, s in zip(theta.split(sizes), shapes))
        logits = torch.tanh(x @ W1.T + b1) @ W2.T + b2
        return torch.nn.functional.cross_entropy(logits, y)

    theta = torch.randn(sum(sizes), generator=gen, dtype=torch.float64)
    return TinyMLP(loss=loss, theta=theta, P=sum(sizes))
