"""Cosines, per-segment norms, dots and cosines against NumPy (tolerance 1e-12 relative for
float64 inputs, 1e-6 for float32), and the per-segment kernel's exactness on realistic
float32 vectors (nearly parallel and nearly orthogonal pairs: 1e-12 relative, where float32
products would miss 1e-6)."""

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
    segment_norms,
    segment_pair_dots,
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


# ------------------------------------------------------------- segment_pair_dots, dot64

METHODS = ("auto", "dots", "products")


@pytest.mark.parametrize("method", METHODS)
def test_segment_pair_dots_are_every_pairwise_dot_on_every_segment(method):
    gen = torch.Generator().manual_seed(3)
    vs = [torch.randn(1000, generator=gen, dtype=torch.float32) for _ in range(3)]
    bounds = [(500, 1000), (0, 100), (100, 400), (400, 400), (420, 480)]  # any order, a gap
    X = np.stack([v.double().numpy() for v in vs])
    pairs = [(vs[i], vs[j]) for i in range(3) for j in range(3)]
    D = segment_pair_dots(pairs, bounds, method=method)
    assert D.dtype == torch.float64 and D.shape == (5, 9)
    for s, (a, b) in enumerate(bounds):
        np.testing.assert_allclose(D[s].numpy().reshape(3, 3), X[:, a:b] @ X[:, a:b].T,
                                   rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="non-overlapping"):
        segment_pair_dots(pairs, [(0, 10), (5, 20)], method=method)
    with pytest.raises(ValueError, match="one length"):
        segment_pair_dots([(vs[0], vs[1][:-1])], [(0, 10)], method=method)


def _realistic(n_layers=(3000, 40, 20_000, 25, 700), seed=5):
    """Gradient-like float32 vectors: per-layer scales from 1e-4 to 10, heavy-tailed entries.

    Returns (a, b_parallel, b_orthogonal, bounds): b_parallel = a + a 1e-4 perturbation
    (cosines 1 - ~1e-8), b_orthogonal nearly orthogonal to a on every layer (cosines ~1e-4).
    """
    rng = np.random.default_rng(seed)
    parts_a, parts_p, parts_o, bounds, start = [], [], [], [], 0
    for i, n in enumerate(n_layers):
        scale = 10.0 ** (-4 + i) * np.exp(rng.normal(0, 1.5, n))  # heavy tails in a layer
        a = scale * rng.normal(size=n)
        p = a + 1e-4 * scale * rng.normal(size=n)
        o = scale * rng.normal(size=n)
        o -= (a @ o) / (a @ a) * a  # orthogonal to a ...
        o += 1e-4 * np.linalg.norm(o) / np.linalg.norm(a) * a  # ... up to a cosine of 1e-4
        parts_a.append(a), parts_p.append(p), parts_o.append(o)
        bounds.append((start, start + n))
        start += n
    f32 = lambda parts: torch.from_numpy(np.concatenate(parts).astype(np.float32))  # noqa: E731
    return f32(parts_a), f32(parts_p), f32(parts_o), bounds


@pytest.mark.parametrize("method", METHODS)
def test_segment_pair_dots_cosines_and_norms_match_float64_on_realistic_vectors(method):
    a, par, orth, bounds = _realistic()
    D = segment_pair_dots([(a, a), (par, par), (orth, orth), (a, par), (a, orth)], bounds,
                          method=method).numpy()
    A, P, O = (v.double().numpy() for v in (a, par, orth))  # exact: the float64 reference
    for s, (i, j) in enumerate(bounds):
        x, p, o = A[i:j], P[i:j], O[i:j]
        assert np.sqrt(D[s, 0]) == pytest.approx(np.linalg.norm(x), rel=1e-12)
        assert np.sqrt(D[s, 2]) == pytest.approx(np.linalg.norm(o), rel=1e-12)
        cos_par = D[s, 3] / np.sqrt(D[s, 0] * D[s, 1])
        cos_orth = D[s, 4] / np.sqrt(D[s, 0] * D[s, 2])
        want_orth = np_cos(x, o)
        assert 1 - 1e-6 < cos_par < 1 and 1e-5 < abs(want_orth) < 1e-3  # the cases named
        assert cos_par == pytest.approx(np_cos(x, p), rel=1e-12)
        assert cos_orth == pytest.approx(want_orth, rel=1e-9)
        # the tolerance bites: float32 products and sums miss 1e-6 on the orthogonal pair
        f32 = float((a[i:j] * orth[i:j]).sum()) / np.sqrt(D[s, 0] * D[s, 2])
        assert f32 != pytest.approx(want_orth, rel=1e-6) or j - i < 100


def test_segment_pair_dots_methods_agree_and_take_float64_and_mixed_inputs():
    gen = torch.Generator().manual_seed(6)
    a32, b32 = torch.randn(70_000, generator=gen), torch.randn(70_000, generator=gen)
    a64 = a32.double()
    bounds = [(0, 65_000), (65_000, 70_000)]
    got = {m: segment_pair_dots([(a32, b32), (a64, b32), (a64, a64)], bounds, method=m)
           for m in METHODS}
    torch.testing.assert_close(got["dots"], got["products"], rtol=1e-13, atol=0)
    assert torch.equal(got["auto"], got["dots"])  # 70,000 entries on the CPU: one dot each
    torch.testing.assert_close(got["dots"][:, 0], got["dots"][:, 1], rtol=0, atol=0)
    small = segment_pair_dots([(a32[:100], b32[:100])], [(0, 100)])
    assert torch.equal(small, segment_pair_dots([(a32[:100], b32[:100])], [(0, 100)],
                                                method="products"))


@pytest.mark.parametrize(
    "call, msg",
    [
        (lambda v: segment_pair_dots([], [(0, 3)]), "at least one pair"),
        (lambda v: segment_pair_dots([(v, v)], [(0, 3)], method="fast"), "method in"),
        (lambda v: segment_pair_dots([(v.view(2, 5), v.view(2, 5))], [(0, 3)]), "1-D float"),
        (lambda v: segment_pair_dots([(v.long(), v.long())], [(0, 3)]), "1-D float"),
        (lambda v: segment_pair_dots([(v, v)], [(0, 11)]), "stop <= 10"),
    ],
)
def test_segment_pair_dots_rejects_bad_input_in_one_line(call, msg):
    with pytest.raises(ValueError, match=msg) as err:
        call(torch.arange(10.0))
    assert "\n" not in str(err.value) and "expected" in str(err.value)


def test_dot64_is_the_float64_dot_product_in_blocks():
    gen = torch.Generator().manual_seed(4)
    a, b = (torch.randn(10_001, generator=gen, dtype=torch.float32) for _ in range(2))
    exact = float(a.double().numpy() @ b.double().numpy())
    assert dot64(a, b) == float(torch.dot(a.double(), b.double()))  # one block: the same
    assert dot64(a, b, block=1000) == pytest.approx(exact, rel=1e-12)
    with pytest.raises(ValueError, match="same length"):
        dot64(a, b[:-1])
