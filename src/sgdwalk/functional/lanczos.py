"""Top eigenvalues of a symmetric operator given only as a matrix-vector product.

Made for the Hessian (sharpness): `matvec(v) -> H v` is typically `hvp` on a fixed batch.

    lanczos                    top-k eigenpairs (largest algebraic), Lanczos with full
                               reorthogonalisation and a residual stopping rule
    power_iteration            L2-normalised power iteration (PyHessian style)
    power_iteration_original   the original study's fixed 15 steps, infinity-norm scaling

The matvec receives a (dim,) tensor of the requested dtype and device and must return a
(dim,) tensor; its result is cast back to that dtype. Randomness comes only from the
`generator` argument.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "LanczosResult",
    "PowerIterationResult",
    "lanczos",
    "power_iteration",
    "power_iteration_original",
]

MatVec = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class LanczosResult:
    """Outcome of `lanczos`.

    eigenvalues: (k,) Ritz values, descending.
    eigenvectors: (k, dim) unit Ritz vectors, row i for eigenvalues[i].
    residuals: (k,) Lanczos residual estimates |beta_m s_{m,i}| / |lambda_i|, which equal
        the true ||A y_i - lambda_i y_i|| / |lambda_i| up to round-off because the basis is
        kept orthogonal (full reorthogonalisation).
    n_matvec: matrix-vector products used.
    converged: every residual is below tol.
    """

    eigenvalues: Tensor
    eigenvectors: Tensor
    residuals: Tensor
    n_matvec: int
    converged: bool


@dataclass(frozen=True)
class PowerIterationResult:
    """Outcome of a power iteration.

    eigenvalue: the estimate (see the function that returned it).
    eigenvector: (dim,) unit vector (L2 norm 1).
    n_matvec: matrix-vector products used.
    rel_change: |lambda_last - lambda_previous| / |lambda_last| at the last step.
    converged: the stopping test passed (`power_iteration_original` makes no test: False).
    """

    eigenvalue: float
    eigenvector: Tensor
    n_matvec: int
    rel_change: float
    converged: bool


def _start_vector(
    dim: int | None, v0: Tensor | None, generator, dtype, device, where: str
) -> Tensor:
    if v0 is not None:
        v = v0.detach().to(dtype=dtype, device=device)
        if v.dim() == 2:  # several previous eigenvectors: start from their sum
            v = v.sum(dim=0)
        if v.dim() != 1 or (dim is not None and v.numel() != dim):
            raise ValueError(
                f"{where}: expected v0 of shape ({dim if dim is not None else 'dim'},) "
                f"or (k, dim), got {tuple(v0.shape)}"
            )
        if float(torch.linalg.vector_norm(v)) > 0:
            return v / torch.linalg.vector_norm(v)
        dim = v.numel()
    if dim is None or dim < 1:
        raise ValueError(f"{where}: expected dim >= 1 or a non-zero v0, got dim={dim}")
    return _random_unit(dim, generator, dtype, device)


def _random_unit(dim: int, generator, dtype, device) -> Tensor:
    # Draw on the generator's device (CPU by default), then move: reproducible anywhere.
    gen_device = generator.device if generator is not None else "cpu"
    v = torch.randn(dim, generator=generator, dtype=dtype, device=gen_device).to(device)
    return v / torch.linalg.vector_norm(v)


def lanczos(
    matvec: MatVec,
    dim: int | None = None,
    k: int = 1,
    tol: float = 1e-6,
    max_iter: int = 100,
    v0: Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> LanczosResult:
    """Top-k (largest algebraic) eigenpairs of a symmetric operator A by Lanczos.

    Builds an orthonormal Krylov basis Q_m = [q_1 .. q_m] of span{v0, A v0, ..}, keeping
    it orthogonal to working precision (two passes of classical Gram-Schmidt against all
    previous vectors at every step), and the tridiagonal T_m = Q_m^T A Q_m with diagonal
    alpha_j and off-diagonal beta_j. Ritz pairs (theta_i, y_i = Q_m s_i) come from
    T_m s_i = theta_i s_i. It stops when every wanted pair has
        |beta_m s_{m,i}| / |theta_i| < tol,
    which is its relative residual ||A y_i - theta_i y_i|| / |theta_i|.

    If beta_j vanishes (the Krylov space is invariant: at most eps^(3/4) ||T||) before k
    pairs have converged, it continues from a random unit vector orthogonal to the basis
    so far. If dim <= max_iter the basis can be completed and the answer is exact.
    A start vector that is an exact eigenvector is certified as it is (a Krylov method
    cannot see directions its start vector lacks): warm starts are best perturbed slightly.

    Args:
        matvec: v -> A v on (dim,) tensors.
        dim: operator size; may be omitted when v0 is given.
        k: number of eigenpairs wanted, 1 <= k <= dim.
        tol: relative residual tolerance.
        max_iter: most Lanczos steps (= matvecs); capped at dim.
        v0: start vector (dim,), e.g. the previous top eigenvector (warm start), or (j, dim)
            previous eigenvectors whose sum is used; random (from `generator`) if None.
        generator: source of random vectors; None means a CPU generator seeded with 0.
        dtype, device: of the Krylov basis (memory: at most 2 m x dim x itemsize for m
            steps taken).

    Returns: `LanczosResult`.
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    if device is None:
        device = v0.device if v0 is not None else "cpu"
    q = _start_vector(dim, v0, generator, dtype, device, "lanczos")
    n = q.numel()
    if not 1 <= k <= n:
        raise ValueError(f"lanczos: expected 1 <= k <= dim={n}, got k={k}")
    if not tol > 0 or max_iter < k:
        raise ValueError(f"lanczos: expected tol > 0 and max_iter >= k, got {tol}, {max_iter}")
    m_max = min(max_iter, n)
    breakdown = torch.finfo(dtype).eps ** 0.75
    tiny = torch.finfo(dtype).tiny

    # The basis grows by doubling: max_iter x dim may not fit, the converged basis will.
    Q = torch.empty(min(m_max, 2 * k + 8), n, dtype=dtype, device=device)
    Q[0] = q
    alphas: list[float] = []
    betas: list[float] = []  # betas[j] couples q_j and q_{j+1}; 0 after a restart
    n_matvec = 0
    theta = S = res = None
    converged = False
    for j in range(m_max):
        w = matvec(Q[j]).to(dtype=dtype, device=device).reshape(-1)
        n_matvec += 1
        basis = Q[: j + 1]
        h = basis @ w
        w = w - basis.T @ h
        h2 = basis @ w  # second pass: "twice is enough" keeps Q orthogonal to eps
        w = w - basis.T @ h2
        alphas.append(float(h[j] + h2[j]))
        beta = float(torch.linalg.vector_norm(w))

        T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if j > 0:
            off = torch.tensor(betas, dtype=torch.float64)
            T += torch.diag(off, 1) + torch.diag(off, -1)
        theta, S = torch.linalg.eigh(T)
        theta, S = theta.flip(0), S.flip(1)  # descending
        anorm = float(theta.abs().max())
        res = (beta * S[-1, : min(k, j + 1)]).abs() / theta[: min(k, j + 1)].abs().clamp_min(
            max(tiny, torch.finfo(dtype).eps * anorm)
        )
        converged = j + 1 >= k and bool((res < tol).all())
        if converged or j + 1 == m_max:
            break
        if j + 1 == Q.shape[0]:
            grown = torch.empty(min(m_max, 2 * Q.shape[0]), n, dtype=dtype, device=device)
            grown[: j + 1] = Q
            Q, basis = grown, grown[: j + 1]
        if beta <= breakdown * max(anorm, tiny):
            # Invariant subspace: restart from a random direction orthogonal to the basis.
            r = _random_unit(n, generator, dtype, device)
            for _ in range(2):
                r = r - basis.T @ (basis @ r)
            Q[j + 1] = r / torch.linalg.vector_norm(r)
            betas.append(0.0)
        else:
            Q[j + 1] = w / beta
            betas.append(beta)

    m = len(alphas)
    if m == n:  # the basis spans the whole space: T is A in that basis, exactly
        res = torch.zeros(min(k, m), dtype=torch.float64)
        converged = True
    kk = min(k, m)
    vecs = S[:, :kk].to(dtype=dtype, device=device).T @ Q[:m]
    vecs = vecs / torch.linalg.vector_norm(vecs, dim=1, keepdim=True)
    return LanczosResult(
        eigenvalues=theta[:kk].clone(),
        eigenvectors=vecs,
        residuals=res.clone(),
        n_matvec=n_matvec,
        converged=converged,
    )


def power_iteration(
    matvec: MatVec, v0: Tensor, tol: float = 1e-3, max_iter: int = 100
) -> PowerIterationResult:
    """L2-normalised power iteration for the eigenvalue of largest magnitude.

    v <- A v / ||A v||, lambda = v^T A v (Rayleigh quotient), stopping when
        |lambda_t - lambda_{t-1}| / |lambda_t| < tol.
    For a PSD operator that is the top eigenvalue; for an indefinite Hessian it may be
    the most negative one. Convergence is geometric in |lambda_2 / lambda_1|.

    Args:
        matvec: v -> A v on (dim,) tensors.
        v0: (dim,) non-zero start vector; its dtype and device are used throughout.
        tol: relative change of the Rayleigh quotient that stops the iteration.
        max_iter: most matvecs.

    Returns: `PowerIterationResult` with eigenvalue the last Rayleigh quotient.
    """
    v = v0.detach().reshape(-1)
    nv = torch.linalg.vector_norm(v)
    if not float(nv) > 0:
        raise ValueError("power_iteration: expected a non-zero, finite v0")
    v = v / nv
    lam, rel, converged, n_matvec = math.nan, math.nan, False, 0
    for _ in range(max_iter):
        w = matvec(v).to(v.dtype).reshape(-1)
        n_matvec += 1
        new = float(v @ w)
        rel = abs(new - lam) / abs(new) if new != 0 else math.inf
        lam = new
        nw = torch.linalg.vector_norm(w)
        if not float(nw) > 0:  # A v = 0: v is an eigenvector of eigenvalue 0
            rel, converged = 0.0, True
            break
        v = w / nw
        if rel < tol:
            converged = True
            break
    return PowerIterationResult(lam, v, n_matvec, rel, converged)


def power_iteration_original(matvec: MatVec, v0: Tensor, steps: int = 15) -> PowerIterationResult:
    """The original study's sharpness: `steps` infinity-norm-normalised power steps.

    v <- A v / ||A v||_inf for a fixed number of steps, no stopping test; the estimate is
    the last scaling factor ||A v||_inf (with ||v||_inf = 1), which tends to |lambda_max|
    (largest magnitude) as v converges.

    Args:
        matvec: v -> A v on (dim,) tensors.
        v0: (dim,) non-zero start vector; its dtype and device are used throughout.
        steps: number of matvecs (the original used 15).

    Returns: `PowerIterationResult` with eigenvalue the last factor ||A v||_inf (>= 0),
    eigenvector the last iterate rescaled to L2 norm 1, and converged False.
    """
    v = v0.detach().reshape(-1)
    nv = torch.linalg.vector_norm(v, ord=math.inf)
    if not float(nv) > 0 or steps < 1:
        raise ValueError(f"power_iteration_original: expected non-zero v0, steps >= 1, got {steps}")
    v = v / nv
    factor, rel, n_matvec = math.nan, math.nan, 0
    for _ in range(steps):
        w = matvec(v).to(v.dtype).reshape(-1)
        n_matvec += 1
        new = float(torch.linalg.vector_norm(w, ord=math.inf))
        rel = abs(new - factor) / new if new > 0 else math.nan
        factor = new
        if not new > 0:
            break
        v = w / new
    return PowerIterationResult(factor, v / torch.linalg.vector_norm(v), n_matvec, rel, False)
