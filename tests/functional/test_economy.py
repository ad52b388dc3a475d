"""Economy floors against exact quadratics and cubics (tolerance 1e-12 relative)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sgdwalk.functional import ECONOMY_KEYS, cubic_floor, quadratic_floor


def gd_line(quadratic, lr_kappa):
    theta = quadratic.c + torch.linspace(-1.0, 1.0, quadratic.c.numel(), dtype=torch.float64)
    g = quadratic.grad(theta)
    lr = lr_kappa / (float(g @ quadratic.A @ g) / float(g @ g))
    u = -lr * g
    exact = quadratic.line(theta, u)
    exact["df1"] = float(quadratic.grad(theta + u) @ u)
    return exact


@pytest.mark.parametrize("lr_kappa", [1.6, 2.5, 1.0, 0.9])
def test_both_fits_are_exact_on_a_quadratic(quadratic, lr_kappa):
    ex = gd_line(quadratic, lr_kappa)
    q = quadratic_floor(ex["f0"], ex["gu"], ex["f1"])
    c = cubic_floor(ex["f0"], ex["gu"], ex["f1"], ex["df1"])
    for r in (q, c):
        assert tuple(r) == ECONOMY_KEYS
        assert r["floor_a"] == pytest.approx(1.0 / lr_kappa, rel=1e-12)
        for key in ("floor_loss", "height", "height_end"):
            assert r[key] == pytest.approx(ex[key], rel=1e-12, abs=1e-14)
        assert r["curv"] == pytest.approx(ex["uAu"], rel=1e-12)


def test_floor_outside_the_bracket_is_clipped(quadratic):
    ex = gd_line(quadratic, 0.5)  # a* = 2 > hi
    q = quadratic_floor(ex["f0"], ex["gu"], ex["f1"], lo=-0.25, hi=1.25)
    assert q["floor_a"] == 1.25
    f = ex["f0"] + 1.25 * ex["gu"] + 0.5 * 1.25**2 * ex["uAu"]
    assert q["floor_loss"] == pytest.approx(f, rel=1e-12)
    c = cubic_floor(ex["f0"], ex["gu"], ex["f1"], ex["df1"], lo=-0.25, hi=1.25)
    assert c["floor_a"] == 1.25 and c["floor_loss"] == pytest.approx(f, rel=1e-12)
    wide = quadratic_floor(ex["f0"], ex["gu"], ex["f1"], lo=-1.0, hi=3.0)
    assert wide["floor_a"] == pytest.approx(2.0, rel=1e-12)


def test_no_interior_minimum_gives_the_better_end():
    # concave: q(a) = 1 - a - 0.5 a^2, lower at hi
    r = quadratic_floor(1.0, -1.0, -0.5, lo=-0.25, hi=1.25)
    assert r["floor_a"] == 1.25 and r["curv"] == -1.0
    assert r["floor_loss"] == pytest.approx(1.0 - 1.25 - 0.5 * 1.25**2, rel=1e-15)
    # straight and rising: lower at lo
    r = quadratic_floor(1.0, 0.5, 1.5, lo=-0.25, hi=1.25)
    assert r["floor_a"] == -0.25 and r["floor_loss"] == pytest.approx(0.875) and r["curv"] == 0
    assert r["height"] == pytest.approx(0.125) and r["height_end"] == pytest.approx(0.625)


def hermite_data(coef):
    """f0, f'(0), f(1), f'(1) of p(a) = sum coef[i] a^i."""
    p = np.polynomial.Polynomial(coef)
    return float(p(0)), float(p.deriv()(0)), float(p(1)), float(p.deriv()(1)), p


@pytest.mark.parametrize(
    "coef",
    [
        [2.0, 0.3, -1.2, 1.0],  # c3 > 0, c2 < 0: local min at 0.645
        [0.0, -0.3, 0.0, 1.0],  # c2 = 0: local min at sqrt(0.1)
        [0.0, -0.2, -0.3, 1.0],  # c2 < 0
        [1.0, -0.2, 0.9, -1.0],  # c3 < 0: local min is the smaller critical point
        [1.0, -1.0, 1.0, 0.2],  # c2, c3 > 0
    ],
)
def test_cubic_fit_is_exact_on_a_cubic(coef):
    f0, df0, f1, df1, p = hermite_data(coef)
    crit = [r.real for r in p.deriv().roots() if abs(r.imag) < 1e-12]
    (a_min,) = [r for r in crit if p.deriv(2)(r) > 0]
    assert -0.25 <= a_min <= 1.25
    r = cubic_floor(f0, df0, f1, df1)
    assert r["floor_a"] == pytest.approx(a_min, abs=1e-12)
    assert r["floor_loss"] == pytest.approx(float(p(a_min)), abs=1e-12)
    assert r["curv"] == pytest.approx(float(p.deriv(2)(a_min)), abs=1e-12)
    assert r["height"] == pytest.approx(f0 - float(p(a_min)), abs=1e-12)


def test_cubic_without_a_local_minimum_in_the_bracket_gives_the_better_end():
    f0, df0, f1, df1, _ = hermite_data([1.0, -1.0, 0.0, -0.5])  # monotone decreasing
    r = cubic_floor(f0, df0, f1, df1, lo=0.0, hi=1.0)
    assert r["floor_a"] == 1.0 and r["floor_loss"] == pytest.approx(f1)
    f0, df0, f1, df1, _ = hermite_data([0.0, -3.0, 0.0, 1.0])  # local min at a = 1 > hi
    r = cubic_floor(f0, df0, f1, df1, lo=0.0, hi=0.5)
    assert r["floor_a"] == 0.5 and r["floor_loss"] == pytest.approx(-1.5 + 0.125)


def test_non_finite_inputs_give_nan_and_bad_brackets_raise():
    assert all(math.isnan(x) for x in quadratic_floor(1.0, math.nan, 0.5).values())
    assert all(math.isnan(x) for x in cubic_floor(1.0, -1.0, math.inf, 0.0).values())
    with pytest.raises(ValueError, match="lo <= hi"):
        quadratic_floor(1.0, -1.0, 0.5, lo=1.0, hi=0.0)
    with pytest.raises(ValueError, match="lo <= hi"):
        cubic_floor(1.0, -1.0, 0.5, 0.0, lo=0.0, hi=math.inf)
