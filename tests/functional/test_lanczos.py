"""Lanczos and power iteration against torch.linalg.eigvalsh on matrices with known
spectra and on the full Hessian of a small network (eigenvalues to 1e-6 relative)."""

from __future__ import annotations

import pytest
import torch

from sgdwalk.functional import (
    hvp,
    lanczos,
    power_iteration,
    power_iteration_original,
)


class Counted:
    """A matvec that counts its calls and records Rayleigh quotients v^T A v / v^T v."""

    def __init__(self, A):
        self.A, self.calls, self.rayleigh = A, 0, []

    def __call__(self, v):
        self.calls += 1
        w = self.A @ v
        self.rayleigh.append(float(v @ w) / float(v @ v))
        return w


def known_spectrum(make_quadratic, dim=200, seed=0):
    """Top eigenvalues 10, 9, 8, 7, 6 well apart from a bulk in [-1, 3]."""
    gen = torch.Generator().manual_seed(seed)
    bulk = -1.0 + 4.0 * torch.rand(dim - 5, generator=gen, dtype=torch.float64)
    lams = torch.cat([torch.tensor([10.0, 9.0, 8.0, 7.0, 6.0], dtype=torch.float64), bulk])
    return make_quadratic(lams, seed=seed)


def true_residuals(A, res):
    r = res.eigenvectors @ A - res.eigenvalues[:, None] * res.eigenvectors
    return torch.linalg.vector_norm(r, dim=1) / res.eigenvalues.abs()


def test_lanczos_top_k_of_a_known_spectrum(quadratic_factory):
    q = known_spectrum(quadratic_factory)
    res = lanczos(lambda v: q.A @ v, dim=200, k=5, tol=1e-8, max_iter=150)
    assert res.converged
    exact = torch.linalg.eigvalsh(q.A).flip(0)[:5]
    assert torch.allclose(res.eigenvalues, exact, rtol=1e-6, atol=0)
    assert torch.allclose(exact, q.lams[:5], rtol=1e-12)
    # eigenvectors: unit, and aligned with the true ones up to sign
    overlap = (res.eigenvectors @ q.Q[:, :5]).diagonal().abs()
    assert torch.allclose(overlap, torch.ones(5, dtype=torch.float64), atol=1e-6)
    # the reported residual is below tol and is the true residual (orthogonal basis)
    assert bool((res.residuals < 1e-8).all())
    assert torch.allclose(true_residuals(q.A, res), res.residuals, atol=1e-12)
    assert res.n_matvec < 150


def test_lanczos_on_the_full_hessian_of_a_small_network(tiny_mlp):
    H = torch.autograd.functional.hessian(tiny_mlp.loss, tiny_mlp.theta)
    exact = torch.linalg.eigvalsh(H).flip(0)[:3]

    def matvec(v):
        return hvp(tiny_mlp.loss, tiny_mlp.theta, v)

    for max_iter in (30, 100):  # 30 < P = 39 < 100 (the exact, full-basis case)
        res = lanczos(matvec, dim=tiny_mlp.P, k=3, tol=1e-9, max_iter=max_iter)
        assert res.converged
        assert torch.allclose(res.eigenvalues, exact, rtol=1e-6, atol=0)
        assert bool((true_residuals(H, res) < 1e-6).all())


@pytest.mark.parametrize("drift, saving", [(1e-3, 0.7), (1e-6, 0.5)])
def test_warm_start_needs_fewer_matvecs(quadratic_factory, drift, saving):
    q = known_spectrum(quadratic_factory)
    cold = lanczos(Counted(q.A), dim=200, k=1, tol=1e-8, max_iter=150)
    # one SGD step later the Hessian has moved a little
    gen = torch.Generator().manual_seed(5)
    E = drift * torch.randn(200, 200, generator=gen, dtype=torch.float64)
    A2 = q.A + 0.5 * (E + E.T)
    exact2 = float(torch.linalg.eigvalsh(A2)[-1])
    cold2 = lanczos(Counted(A2), dim=200, k=1, tol=1e-8, max_iter=150)
    warm2 = lanczos(Counted(A2), k=1, tol=1e-8, max_iter=150, v0=cold.eigenvectors[0])
    assert warm2.converged and cold2.converged
    assert float(warm2.eigenvalues[0]) == pytest.approx(exact2, rel=1e-12)
    assert warm2.n_matvec <= saving * cold2.n_matvec, (warm2.n_matvec, cold2.n_matvec)


def test_invariant_start_subspace_is_left_and_the_answer_completed():
    A = torch.diag(torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.1], dtype=torch.float64))
    v0 = torch.zeros(7, dtype=torch.float64)
    v0[2] = v0[3] = 1.0  # spans the invariant subspace of eigenvalues 3 and 2 only
    res = lanczos(lambda v: A @ v, k=3, tol=1e-10, max_iter=50, v0=v0)
    assert res.converged
    assert torch.allclose(res.eigenvalues, torch.tensor([5.0, 4.0, 3.0], dtype=torch.float64))


def test_small_dimension_is_solved_exactly_and_arguments_are_checked(quadratic_factory):
    q = quadratic_factory([3.0, 1.0, -2.0, 0.5, 0.0, -1.0])
    res = lanczos(lambda v: q.A @ v, dim=6, k=6, tol=1e-12, max_iter=100)
    assert res.converged and res.n_matvec == 6 and res.eigenvectors.shape == (6, 6)
    assert torch.allclose(res.eigenvalues, q.lams, atol=1e-12)
    with pytest.raises(ValueError, match="k <= dim"):
        lanczos(lambda v: q.A @ v, dim=6, k=7)
    with pytest.raises(ValueError, match="dim"):
        lanczos(lambda v: q.A @ v)
    with pytest.raises(ValueError, match="max_iter >= k"):
        lanczos(lambda v: q.A @ v, dim=6, k=3, max_iter=2)


def test_lanczos_in_float32(quadratic_factory):
    q = known_spectrum(quadratic_factory)
    A32 = q.A.float()
    res = lanczos(lambda v: A32 @ v, dim=200, k=2, tol=1e-4, max_iter=100, dtype=torch.float32)
    assert res.eigenvectors.dtype == torch.float32 and res.converged
    assert torch.allclose(res.eigenvalues, q.lams[:2], rtol=1e-4)


def test_power_iteration_converges_to_the_top_eigenvalue_of_a_psd_matrix(quadratic_factory):
    q = quadratic_factory(torch.linspace(0.0, 1.0, 50).tolist() + [2.0], seed=2)
    v0 = torch.ones(51, dtype=torch.float64)
    res = power_iteration(lambda v: q.A @ v, v0, tol=1e-10, max_iter=200)
    assert res.converged and res.rel_change < 1e-10
    assert res.eigenvalue == pytest.approx(2.0, rel=1e-9)
    assert abs(float(res.eigenvector @ q.Q[:, 0])) == pytest.approx(1.0, abs=1e-6)
    short = power_iteration(lambda v: q.A @ v, v0, tol=1e-10, max_iter=3)
    assert not short.converged and short.n_matvec == 3


def test_power_iteration_original_uses_fifteen_infinity_norm_steps(quadratic_factory):
    q = quadratic_factory([10.0, 1.0, 0.5, 0.2, 0.1], seed=4)  # gap 10x: 15 steps suffice
    calls = Counted(q.A)
    v0 = torch.ones(5, dtype=torch.float64)
    res = power_iteration_original(calls, v0)
    assert calls.calls == 15 == res.n_matvec and not res.converged
    assert res.eigenvalue == pytest.approx(10.0, rel=1e-10)  # ||A v||_inf with ||v||_inf = 1
    assert float(torch.linalg.vector_norm(res.eigenvector)) == pytest.approx(1.0)


def test_lanczos_needs_far_fewer_matvecs_than_power_iteration_on_a_small_gap(quadratic_factory):
    """Top eigenvalue 1.0, next 0.98 (2% gap): matvecs to reach 1e-3 relative accuracy."""
    gen = torch.Generator().manual_seed(0)
    bulk = 0.9 * torch.rand(298, generator=gen, dtype=torch.float64)
    q = quadratic_factory(torch.cat([torch.tensor([1.0, 0.98], dtype=torch.float64), bulk]))
    v0 = torch.randn(300, generator=gen, dtype=torch.float64)

    power = Counted(q.A)
    power_iteration(power, v0, tol=0.0, max_iter=2000)
    rq = torch.tensor(power.rayleigh)
    n_power = int(torch.nonzero((1.0 - rq).abs() < 1e-3)[0]) + 1

    n_lanczos = None
    for m in range(1, 100):
        res = lanczos(lambda v: q.A @ v, k=1, tol=1e-300, max_iter=m, v0=v0)
        if abs(float(res.eigenvalues[0]) - 1.0) < 1e-3:
            n_lanczos = res.n_matvec
            break
    assert n_lanczos is not None
    assert n_lanczos * 3 < n_power, (n_lanczos, n_power)  # 14 vs 61 when written


def test_power_iteration_rejects_a_zero_start():
    with pytest.raises(ValueError, match="non-zero"):
        power_iteration(lambda v: v, torch.zeros(3))
    with pytest.raises(ValueError, match="non-zero"):
        power_iteration_original(lambda v: v, torch.zeros(3))
