"""Cosines, per-segment norms, dots and cosines against NumPy (tolerance 1e-12 relative for
float64 inputs, 1e-6 for float32)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sgdwalk.functional import (
    cosine,
    dot64,
    segment_cosines,
    segment_dots,
    segment_grams,
    segment_norms,
)


def vectors(n=1000, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, generator=gen, dtype=dtype),
        torch.randn(n, generator=gen, dtype=dtype),
    )


def np_cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


def test_cosine_matches_numpy():
    a, b = vectors()
    assert cosine(a, b) == pytest.approx(np_cos(a, b), rel=1e-12)
    a32, b32 = vectors(dtype=torch.float32)
    assert cosine(a32, b32) == pytest.approx(np_cos(a32, b32), rel=1e-6)
    same, opposite = cosine(a, 3.0 * a), cosine(a, -a)
    assert 1.0 - 1e-15 <= same <= 1.0 and -1.0 <= opposite <= -1.0 + 1e-15  # clamped


def test_cosine_is_nan_for_a_zero_vector():
    a, _ = vectors()
    assert math.isnan(cosine(a, torch.zeros_like(a)))
    assert math.isnan(cosine(torch.zeros(3), torch.zeros(3)))
    with pytest.raises(ValueError, match="same length"):
        cosine(a, a[:-1])


@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=20), st.integers(0, 100))
@settings(max_examples=50, deadline=None)
def test_cosine_is_bounded(xs, seed):
    a = torch.tensor(xs, dtype=torch.float64)
    b = torch.randn(len(xs), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    c = cosine(a, b)
    assert math.isnan(c) or -1.0 <= c <= 1.0


BOUNDS = {
    "contiguous": [(0, 10), (10, 300), (300, 301), (301, 1000)],
    "gaps_unordered": [(500, 700), (3, 40), (900, 1000), (40, 41)],
    "with_empty": [(0, 0), (0, 500), (500, 500), (500, 1000)],
}


@pytest.mark.parametrize("name", BOUNDS)
@pytest.mark.parametrize("dtype, rel", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_segment_values_match_numpy(name, dtype, rel):
    bounds = BOUNDS[name]
    a, b = vectors(dtype=dtype)
    an, bn = a.double().numpy(), b.double().numpy()
    norms = segment_norms(a, bounds)
    dots = segment_dots(a, b, bounds)
    coss = segment_cosines(a, b, bounds)
    assert norms.dtype == dots.dtype == coss.dtype == torch.float64
    assert norms.shape == dots.shape == coss.shape == (len(bounds),)
    for i, (s, e) in enumerate(bounds):
        assert float(norms[i]) == pytest.approx(np.linalg.norm(an[s:e]), rel=rel)
        assert float(dots[i]) == pytest.approx(an[s:e] @ bn[s:e], rel=rel, abs=1e-12)
        if e > s:
            assert float(coss[i]) == pytest.approx(np_cos(an[s:e], bn[s:e]), rel=rel)
        else:  # an empty segment has norm 0: its cosine is undefined
            assert math.isnan(float(coss[i])) and float(norms[i]) == 0.0


def test_segment_values_accept_a_tensor_of_bounds_and_zero_segments():
    a, b = vectors()
    bounds = torch.tensor([[0, 400], [400, 1000]])
    assert torch.allclose(segment_norms(a, bounds), segment_norms(a, [(0, 400), (400, 1000)]))
    zero_a = a.clone()
    zero_a[:400] = 0
    c = segment_cosines(zero_a, b, bounds)
    assert math.isnan(float(c[0])) and float(c[1]) == pytest.approx(np_cos(a[400:], b[400:]))
    assert segment_norms(a, []).shape == (0,)


@pytest.mark.parametrize(
    "bounds, msg",
    [([(0, 10), (5, 20)], "overlapping"), ([(0, 1001)], "stop"), ([(5, 3)], "stop")],
)
def test_segment_values_reject_bad_bounds(bounds, msg):
    a, _ = vectors()
    with pytest.raises(ValueError, match=msg):
        segment_norms(a, bounds)


# ---------------------------------------------------------------- segment_grams, dot64


def test_segment_grams_are_every_pairwise_dot_on_every_segment():
    gen = torch.Generator().manual_seed(3)
    vs = [torch.randn(1000, generator=gen, dtype=torch.float32) for _ in range(3)]
    bounds = [(500, 1000), (0, 100), (100, 400), (400, 400), (420, 480)]  # any order, a gap
    X = np.stack([v.double().numpy() for v in vs])
    for block in (7, 64, 300, 2**16):  # segments cut across blocks, or not
        G = segment_grams(vs, bounds, block=block)
        assert G.dtype == torch.float64 and G.shape == (5, 3, 3)
        for s, (a, b) in enumerate(bounds):
            np.testing.assert_allclose(G[s].numpy(), X[:, a:b] @ X[:, a:b].T, rtol=1e-12,
                                       atol=1e-12)
    with pytest.raises(ValueError, match="non-overlapping"):
        segment_grams(vs, [(0, 10), (5, 20)])
    with pytest.raises(ValueError, match="one length"):
        segment_grams([vs[0], vs[1][:-1]], [(0, 10)])


def test_dot64_is_the_float64_dot_product_in_blocks():
    gen = torch.Generator().manual_seed(4)
    a, b = (torch.randn(10_001, generator=gen, dtype=torch.float32) for _ in range(2))
    exact = float(a.double().numpy() @ b.double().numpy())
    assert dot64(a, b) == float(torch.dot(a.double(), b.double()))  # one block: the same
    assert dot64(a, b, block=1000) == pytest.approx(exact, rel=1e-12)
    with pytest.raises(ValueError, match="same length"):
        dot64(a, b[:-1])
