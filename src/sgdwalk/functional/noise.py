"""Size and shape of mini-batch gradient noise.

Notation: per-example gradients x_1..x_N of the training set (population), with
population mean mu and covariance Sigma = (1/N) sum_j (x_j - mu)(x_j - mu)^T. A mini-batch
gradient g_B is the mean of B examples' gradients.

    with replacement (i.i.d. draws):   Cov[g_B] = Sigma / B
    without replacement (one batch):   Cov[g_B] = Sigma / B * (N - B) / (N - 1)

so tr Cov[g_B] is the total variance SGD's noise adds to the full gradient at batch size
B, and sqrt(tr / P) is the std of isotropic Gaussian noise of the same total variance.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["minibatch_noise_trace", "matched_isotropic_std", "per_coordinate_variance"]


def _check_rows(grads: Tensor, where: str) -> Tensor:
    if grads.dim() != 2 or grads.shape[0] < 2:
        raise ValueError(
            f"{where}: expected an (m, P) tensor with m >= 2, got {tuple(grads.shape)}"
        )
    return grads.detach()


def minibatch_noise_trace(
    micro_grads: Tensor, micro_size: int, batch_size: int, n_total: int | None = None
) -> float:
    """Estimate tr Cov[g_B], the total variance of a size-B mini-batch gradient.

    From m independent micro-batch gradients g_1..g_m (rows), each the mean over b
    examples, the unbiased sample covariance trace
        s^2 = 1/(m - 1) sum_i ||g_i - mean_i g_i||^2
    estimates tr Cov[g_b] (E[s^2] = tr Cov[g_b] exactly), and it is rescaled to batch size B:
        i.i.d. sampling (n_total None):   tr Cov[g_B] = s^2 * b / B
        without replacement from N:       tr Cov[g_B] = s^2 * b / B * (N - B) / (N - b)
    Assumes the micro-batches are independent draws (each without replacement if n_total
    is given); disjoint micro-batches of one shuffled epoch are negatively correlated by
    O(1/N), which is ignored.

    Args:
        micro_grads: (m, P) micro-batch gradients, m >= 2; accumulated in float64 in chunks
            of about 4M entries (never a full float64 copy).
        micro_size: b, examples per micro-batch.
        batch_size: B, the batch size whose noise is wanted.
        n_total: N, population size for the finite-population correction; None for none.

    Returns: the estimate as a float (NaN if any entry is non-finite).
    """
    g = _check_rows(micro_grads, "minibatch_noise_trace")
    b, B = int(micro_size), int(batch_size)
    if b < 1 or B < 1:
        raise ValueError(f"minibatch_noise_trace: expected sizes >= 1, got b={b}, B={B}")
    scale = b / B
    if n_total is not None:
        N = int(n_total)
        if not (N > 1 and b <= N and B <= N and b < N):
            raise ValueError(f"minibatch_noise_trace: expected b < N and B <= N, got {b}, {B}, {N}")
        scale *= (N - B) / (N - b)
    m = g.shape[0]
    mean = g.sum(dim=0, dtype=torch.float64) / m
    ss = 0.0
    for rows in g.split(max(1, 2**22 // max(1, g.shape[1]))):  # bounded float64 copies
        d = rows.to(torch.float64) - mean
        ss += float((d * d).sum())
    return ss / (m - 1) * scale if math.isfinite(ss) else math.nan


def matched_isotropic_std(trace: float, dim: int) -> float:
    """Std sigma of isotropic noise N(0, sigma^2 I_P) with total variance `trace`.

    sigma = sqrt(trace / P), so that tr(sigma^2 I_P) = trace.
    """
    if int(dim) < 1 or not float(trace) >= 0:
        raise ValueError(
            f"matched_isotropic_std: expected trace >= 0, dim >= 1, got {trace}, {dim}"
        )
    return math.sqrt(float(trace) / int(dim))


def per_coordinate_variance(grads: Tensor) -> Tensor:
    """Unbiased variance of each coordinate over the rows of `grads`.

    var_p = 1/(m - 1) sum_i (G_ip - mean_i G_ip)^2. The original study's noise std was
    0.02 * max_p var_p of per-example gradients at initialisation.

    Args: grads: (m, P) gradients (per example or per micro-batch), m >= 2.
    Returns: (P,) float64.
    """
    g = _check_rows(grads, "per_coordinate_variance")
    return g.to(torch.float64).var(dim=0, correction=1)
