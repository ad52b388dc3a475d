"""Mini-batch noise estimates against the exact covariance of a synthetic population.

The population of N per-example gradients is fixed, so tr Cov[g_B] is known exactly; the
estimate from m seeded micro-batches must match it within 5 Monte-Carlo standard errors
(the standard error is measured from independent repeats in the test itself).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sgdwalk.functional import (
    matched_isotropic_std,
    minibatch_noise_trace,
    per_coordinate_variance,
)


def population(N, P=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    L = torch.randn(P, P, generator=gen, dtype=torch.float64) / math.sqrt(P)
    X = torch.randn(N, P, generator=gen, dtype=torch.float64) @ L.T + 3.0  # non-zero mean
    sigma = torch.cov(X.T, correction=0)  # population covariance, 1/N
    return X, float(sigma.trace())


def micro_batches(X, m, b, gen, replace):
    N = X.shape[0]
    if replace:
        idx = torch.randint(0, N, (m, b), generator=gen)
    else:
        idx = torch.stack([torch.randperm(N, generator=gen)[:b] for _ in range(m)])
    return X[idx].mean(dim=1)  # (m, P)


@pytest.mark.parametrize("replace", [True, False])
def test_trace_matches_the_exact_minibatch_covariance(replace):
    N, b, B, m = 60, 4, 30, 1000
    X, tr_sigma = population(N)
    if replace:  # i.i.d. draws
        exact = tr_sigma / B
        n_total = None
    else:  # each batch drawn without replacement
        exact = tr_sigma / B * (N - B) / (N - 1)
        n_total = N
    gen = torch.Generator().manual_seed(1)
    estimates = [
        minibatch_noise_trace(micro_batches(X, m, b, gen, replace), b, B, n_total=n_total)
        for _ in range(8)
    ]
    se = float(np.std(estimates[1:], ddof=1))
    assert abs(estimates[0] - exact) < 5 * se
    assert se < 0.1 * exact  # the check is informative: 5 SE is under half the value
    if not replace:  # forgetting the finite population would be clearly wrong here
        iid = minibatch_noise_trace(micro_batches(X, m, b, gen, False), b, B)
        assert abs(iid - exact) > 0.5 * exact


def test_trace_is_the_unbiased_sample_covariance_trace():
    gen = torch.Generator().manual_seed(2)
    G = torch.randn(7, 40, generator=gen, dtype=torch.float64)
    g = G.numpy()
    tr = np.trace(np.cov(g.T, ddof=1))
    assert minibatch_noise_trace(G, 8, 8) == pytest.approx(tr, rel=1e-12)
    assert minibatch_noise_trace(G, 8, 32) == pytest.approx(tr / 4, rel=1e-12)
    assert minibatch_noise_trace(G.float(), 8, 8) == pytest.approx(tr, rel=1e-5)
    G[0, 0] = float("nan")
    assert math.isnan(minibatch_noise_trace(G, 8, 8))


def test_trace_validates_its_arguments():
    G = torch.zeros(5, 3)
    with pytest.raises(ValueError, match=r"\(m, P\)"):
        minibatch_noise_trace(G[:1], 1, 1)
    with pytest.raises(ValueError, match="sizes"):
        minibatch_noise_trace(G, 0, 1)
    with pytest.raises(ValueError, match="b < N"):
        minibatch_noise_trace(G, 10, 5, n_total=10)


def test_matched_isotropic_std_has_the_same_total_variance():
    sigma = matched_isotropic_std(12.5, 50)
    assert sigma**2 * 50 == pytest.approx(12.5, rel=1e-15)
    assert matched_isotropic_std(0.0, 3) == 0.0
    with pytest.raises(ValueError, match="trace >= 0"):
        matched_isotropic_std(-1.0, 3)


def test_per_coordinate_variance_matches_numpy():
    gen = torch.Generator().manual_seed(3)
    G = torch.randn(9, 25, generator=gen, dtype=torch.float32) * torch.arange(25)
    v = per_coordinate_variance(G)
    assert v.dtype == torch.float64 and v.shape == (25,)
    np.testing.assert_allclose(v.numpy(), G.double().numpy().var(axis=0, ddof=1), rtol=1e-12)
