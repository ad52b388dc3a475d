"""Line-curve analysis against exact parabolas (tolerances: positions 1e-10, losses 1e-12
relative unless stated)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sgdwalk.functional import CURVE_KEYS, curve_summary, make_grid, paired_noise, refine_floor


def parabola(a, vertex=0.4321, curv=3.0, floor=0.7):
    return curv * (a - vertex) ** 2 + floor


# ---------------------------------------------------------------- make_grid


def test_make_grid_contains_both_ends_sorted_unique():
    g = make_grid(-0.25, 1.25, 7)  # linspace already hits 0 and 1 (up to round-off)
    assert g.dtype == torch.float64
    assert g.tolist() == [-0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25]
    g = make_grid(0.05, 0.95, 10)  # neither end on the linspace: both added
    assert g.numel() == 12 and g[0] == 0.0 and g[-1] == 1.0
    assert bool((g[1:] > g[:-1]).all())
    g = make_grid(-0.3, 1.3, 17)  # 0.0 and 1.0 hit up to round-off: snapped, no duplicate
    assert g.numel() == 17 and (g == 0).sum() == 1 and (g == 1).sum() == 1


@pytest.mark.parametrize("args", [(1.0, 0.0, 5), (0.0, 1.0, 1), (0.0, float("nan"), 5)])
def test_make_grid_rejects_bad_arguments(args):
    with pytest.raises(ValueError, match="expected"):
        make_grid(*args)


# ---------------------------------------------------------------- refine_floor


def test_refine_floor_recovers_an_off_grid_vertex_exactly():
    grid = make_grid(-0.25, 1.25, 13)
    a, F = refine_floor(grid, parabola(grid))
    assert a == pytest.approx(0.4321, abs=1e-10)
    assert F == pytest.approx(0.7, rel=1e-12)


def test_refine_floor_on_a_non_uniform_grid_and_float32_values():
    grid = torch.tensor([-0.3, -0.1, 0.0, 0.2, 0.35, 0.6, 1.0, 1.1], dtype=torch.float64)
    a, F = refine_floor(grid, parabola(grid))
    assert a == pytest.approx(0.4321, abs=1e-10)
    a32, F32 = refine_floor(grid.float(), parabola(grid).float())  # float32 inputs accepted
    assert a32 == pytest.approx(0.4321, abs=1e-5) and F32 == pytest.approx(0.7, rel=1e-6)


@given(
    vertex=st.floats(-0.15, 1.15),
    curv=st.floats(1e-3, 1e3),
    floor=st.floats(-10.0, 10.0),
)
@settings(max_examples=60, deadline=None)
def test_refine_floor_is_exact_on_any_parabola_inside_the_grid(vertex, curv, floor):
    grid = make_grid(-0.25, 1.25, 16)
    a, F = refine_floor(grid, parabola(grid, vertex, curv, floor))
    assert a == pytest.approx(vertex, abs=1e-9)
    assert F == pytest.approx(floor, abs=1e-9 * (1 + curv))


def test_refine_floor_at_an_edge_returns_the_edge_point():
    grid = make_grid(-0.25, 1.25, 7)
    assert refine_floor(grid, parabola(grid, vertex=-1.0)) == (-0.25, parabola(-0.25, -1.0))
    assert refine_floor(grid, parabola(grid, vertex=3.0)) == (1.25, parabola(1.25, 3.0))


def test_refine_floor_ignores_non_finite_values():
    grid = make_grid(-0.25, 1.25, 13)
    v = parabola(grid)
    best = int(torch.argmin(v))
    v[best] = float("nan")  # the best sample is missing: three other points, same parabola
    v[0] = float("inf")
    a, F = refine_floor(grid, v)
    assert a == pytest.approx(0.4321, abs=1e-10) and F == pytest.approx(0.7, rel=1e-12)


def test_refine_floor_all_nan_and_flat():
    grid = make_grid(0.0, 1.0, 5)
    a, F = refine_floor(grid, torch.full_like(grid, float("nan")))
    assert math.isnan(a) and math.isnan(F)
    assert refine_floor(grid, torch.ones_like(grid)) == (0.0, 1.0)  # flat: first best sample


# ---------------------------------------------------------------- curve_summary: GD


def gd_step(quadratic, lr_kappa):
    """theta, u = -lr g with lr chosen so that lr * kappa = lr_kappa along u."""
    theta = quadratic.c + torch.linspace(-1.0, 1.0, quadratic.c.numel(), dtype=torch.float64)
    g = quadratic.grad(theta)
    kappa = float(g @ quadratic.A @ g) / float(g @ g)
    lr = lr_kappa / kappa
    return theta, -lr * g


@pytest.mark.parametrize(
    "lr_kappa, interior, bounce",
    [(1.6, 1.0, False), (0.8, 0.0, False), (2.5, 1.0, True), (1.0, 0.0, False)],
)
def test_gd_on_a_quadratic_matches_closed_forms(quadratic, lr_kappa, interior, bounce):
    theta, u = gd_step(quadratic, lr_kappa)
    exact = quadratic.line(theta, u)
    assert exact["floor_a"] == pytest.approx(1.0 / lr_kappa, rel=1e-12)  # a* = 1/(lr kappa)
    grid = make_grid(-0.5, 2.0, 11)
    eps = 1e-9
    s = curve_summary(grid, quadratic.values(theta, u, grid), eps)
    assert tuple(s) == CURVE_KEYS
    assert s["floor_a"] == pytest.approx(exact["floor_a"], abs=1e-10)
    for key in ("floor_loss", "height", "height_end"):
        assert s[key] == pytest.approx(exact[key], rel=1e-10, abs=1e-12)
    assert s["rel_height"] == pytest.approx(exact["height"] / exact["f0"], rel=1e-10)
    assert s["alpha"] == pytest.approx(lr_kappa - 1.0, abs=1e-9)  # 1/a* - 1 = lr kappa - 1
    assert s["quad_curv"] == pytest.approx(exact["uAu"], rel=1e-9)
    assert s["quad_r2"] == pytest.approx(1.0, abs=1e-12)
    assert s["convex"] == 1.0
    assert s["interior"] == interior
    assert (s["height_end"] > s["height"]) == bounce  # lr kappa > 2: lands higher than it left
    # a parabola has no barrier on the step: the highest point of [0, 1] is an end
    assert s["step_barrier"] == pytest.approx(0.0, abs=1e-12) and s["crossing"] == 0.0
    assert s["step_barrier_a"] in (0.0, 1.0)


def test_interior_needs_the_floor_to_be_deeper_than_eps(quadratic):
    theta, u = gd_step(quadratic, 1.6)
    grid = make_grid(-0.25, 1.25, 13)
    values = quadratic.values(theta, u, grid)
    depth = quadratic.line(theta, u)["height_end"]  # f1 < f0 here: min(f0, f1) - F = this
    assert curve_summary(grid, values, 0.5 * depth)["interior"] == 1.0
    assert curve_summary(grid, values, 2.0 * depth)["interior"] == 0.0


# ---------------------------------------------------------------- convexity and crossing


def test_convexity_flag_on_a_bump_and_on_noise():
    grid = make_grid(-0.25, 1.25, 31)
    bump = (grid - 0.5) ** 2 + 0.3 * torch.exp(-(((grid - 0.5) / 0.08) ** 2))
    s = curve_summary(grid, bump, eps=1e-3)
    assert s["convex"] == 0.0 and s["quad_r2"] < 0.95
    gen = torch.Generator().manual_seed(0)
    noisy = parabola(grid) + 1e-4 * torch.randn(grid.shape, generator=gen, dtype=torch.float64)
    assert curve_summary(grid, noisy, eps=1e-3)["convex"] == 1.0  # wiggles below eps
    line = 2.0 - 0.5 * grid  # zero curvature: convex within any eps > round-off
    assert curve_summary(grid, line, eps=1e-12)["convex"] == 1.0
    assert curve_summary(grid, -parabola(grid), eps=1e-3)["convex"] == 0.0


def test_convexity_by_quadratic_fit_when_second_differences_are_too_noisy():
    grid = make_grid(-0.25, 1.25, 31)
    gen = torch.Generator().manual_seed(1)
    noisy = parabola(grid) + 0.02 * torch.randn(grid.shape, generator=gen, dtype=torch.float64)
    s = curve_summary(grid, noisy, eps=1e-3)
    assert s["quad_r2"] >= 0.95 and s["quad_curv"] > 0
    assert s["convex"] == 1.0


def test_crossing_on_a_curve_with_an_interior_maximum():
    grid = make_grid(-0.25, 1.25, 13)
    hill = torch.sin(math.pi * grid)  # 0 at both ends, 1 at a = 0.5
    s = curve_summary(grid, hill, eps=0.1)
    assert s["step_barrier"] == pytest.approx(1.0, abs=1e-15)
    assert s["step_barrier_a"] == 0.5 and s["crossing"] == 1.0
    assert curve_summary(grid, hill, eps=2.0)["crossing"] == 0.0  # not above the noise
    assert s["interior"] == 0.0  # the minimum is at the grid edge, outside (0, 1)


# ---------------------------------------------------------------- missing values


def test_non_finite_values_give_nan_outputs_not_exceptions(quadratic):
    theta, u = gd_step(quadratic, 1.6)
    grid = make_grid(-0.25, 1.25, 13)
    v = quadratic.values(theta, u, grid)
    v[-1] = float("inf")  # a diverged far point: floor and step still fine
    s = curve_summary(grid, v, 1e-9)
    assert s["floor_a"] == pytest.approx(1 / 1.6, abs=1e-10) and s["interior"] == 1.0
    assert math.isnan(s["convex"]) and math.isnan(s["quad_r2"])
    assert s["crossing"] == 0.0
    v[grid == 1.0] = float("nan")  # f(1) missing: everything that needs it is NaN
    s = curve_summary(grid, v, 1e-9)
    for key in ("height_end", "interior", "step_barrier", "crossing"):
        assert math.isnan(s[key]), key
    s = curve_summary(grid, torch.full_like(grid, float("nan")), 1e-9)
    assert all(math.isnan(x) for x in s.values())
    assert math.isnan(curve_summary(grid, quadratic.values(theta, u, grid), math.nan)["convex"])


def test_curve_summary_rejects_malformed_grids():
    with pytest.raises(ValueError, match="0.0 and 1.0"):
        curve_summary(torch.linspace(0.05, 0.95, 5), torch.zeros(5), 0.0)
    with pytest.raises(ValueError, match="increasing"):
        curve_summary(torch.tensor([1.0, 0.0, 0.5]), torch.zeros(3), 0.0)
    with pytest.raises(ValueError, match="eps"):
        curve_summary(make_grid(0, 1, 3), torch.zeros(3), -1.0)


# ---------------------------------------------------------------- paired_noise


def test_paired_noise_is_the_standard_error_of_the_paired_difference():
    gen = torch.Generator().manual_seed(0)
    la = 2.0 + torch.rand(500, generator=gen, dtype=torch.float64)
    lb = la + 0.01 * torch.randn(500, generator=gen, dtype=torch.float64)
    d = (la - lb).numpy()
    assert paired_noise(la, lb) == pytest.approx(d.std(ddof=1) / math.sqrt(500), rel=1e-12)
    # identical losses: only round-off remains, 16 ulps of 1 + the loss, over sqrt(n / 2)
    floor = paired_noise(la, la)
    assert 0 < floor < 1e-13 and floor == pytest.approx(
        16 * 2.220446049250313e-16 * (1 + float(la.mean())) * math.sqrt(2 / 500)
    )
    assert paired_noise(la.float(), la.float()) > 1e-7  # float32 round-off is larger
    assert math.isnan(paired_noise(la[:1], lb[:1]))
    la[3] = float("nan")
    assert math.isnan(paired_noise(la, lb))
    with pytest.raises(ValueError, match="same length"):
        paired_noise(la, lb[:-1])


def test_paired_noise_with_the_finite_population_correction():
    gen = torch.Generator().manual_seed(2)
    la = 2.0 + torch.rand(500, generator=gen, dtype=torch.float64)
    lb = la + 0.01 * torch.randn(500, generator=gen, dtype=torch.float64)
    se = paired_noise(la, lb)
    # n of N without replacement: SE x sqrt((N - n) / (N - 1)); N = infinity: no change
    assert paired_noise(la, lb, population=2000) == pytest.approx(
        se * math.sqrt(1500 / 1999), rel=1e-12)
    assert paired_noise(la, lb, population=10**12) == pytest.approx(se, rel=1e-9)
    # the examples are the whole objective: no sampling noise, only the round-off floor
    top = max(float(la.mean()), float(lb.mean()))
    assert paired_noise(la, lb, population=500) == pytest.approx(
        16 * 2.220446049250313e-16 * (1 + top) * math.sqrt(2 / 500), rel=1e-12)
    with pytest.raises(ValueError, match="expected a population of at least the 500 "
                       "examples, got 499"):
        paired_noise(la, lb, population=499)


def memorised_losses(dtype, points, seed=0, n=1000):
    """Per-example cross-entropies of a tanh MLP with logits in the hundreds on labels it
    predicts (a model that memorised them: a mean loss of 0.02), at theta + a u for each a
    of `points`, evaluated in `dtype` from the same float64 parameters."""
    from copy import deepcopy

    from torch import nn
    from torch.nn.utils import parameters_to_vector, vector_to_parameters

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 10)).double()
    x = torch.randn(n, 16, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        model[2].weight.mul_(300)
        y = model(x).argmax(1)
    theta = parameters_to_vector(model.parameters()).detach()
    u = 1e-3 * torch.randn(theta.shape, generator=gen, dtype=torch.float64)
    out = []
    for a in points:
        m = deepcopy(model)
        vector_to_parameters(theta + a * u, m.parameters())
        m = m.to(dtype)
        with torch.no_grad():
            out.append(torch.nn.functional.cross_entropy(m(x.to(dtype)), y, reduction="none"))
    return out


def test_the_round_off_floor_bounds_float32_error_of_loss_differences():
    """A float32 evaluation against the float64 one of the same parameters (the exact
    answer here): when the examples are the whole objective, eps = 2 x the round-off
    floor stays above the float32 error of every difference f(a) - f(b), also where the
    losses are tiny; a floor relative to the loss alone (the one before the population
    correction made it matter) falls below it."""
    points = (0.0, 0.25, 0.5, 1.0)
    l32, l64 = memorised_losses(torch.float32, points), memorised_losses(torch.float64, points)
    worst, floor, old = 0.0, math.inf, 0.0
    for i in range(len(points)):
        for j in range(i + 1, len(points)):
            err = (float(l32[i].double().mean() - l32[j].double().mean())
                   - float(l64[i].mean() - l64[j].mean()))
            worst = max(worst, abs(err))
            floor = min(floor, 2 * paired_noise(l32[i], l32[j], population=len(l32[i])))
            old = max(old, 16 * torch.finfo(torch.float32).eps * float(l32[i].double().mean()))
    assert 0 < worst < floor
    assert old < worst


# ---------------------------------------------------------------- censored floors


@pytest.mark.parametrize("vertex, edge", [(3.0, 1.25), (-1.0, -0.25)])
def test_a_floor_at_the_grid_edge_is_censored_and_has_no_alpha(vertex, edge):
    """The sampled minimum is an end point: the floor is a bound (the true vertex lies
    beyond the edge), so the flag is set and alpha (1/a* - 1 = -0.2 at a* = 1.25, for
    every such step alike) is not reported."""
    grid = make_grid(-0.25, 1.25, 13)
    f = parabola(grid, vertex=vertex)
    s = curve_summary(grid, f, eps=1e-9)
    assert s["censored"] == 1.0 and s["floor_a"] == edge and math.isnan(s["alpha"])
    true_floor = parabola(torch.tensor(vertex, dtype=torch.float64), vertex=vertex)
    assert s["floor_loss"] > float(true_floor)  # a bound above the true floor
    assert s["height"] < float(f[grid == 0.0] - true_floor)  # the height a lower bound
    inside = curve_summary(grid, parabola(grid, vertex=0.9), eps=1e-9)
    assert inside["censored"] == 0.0 and inside["alpha"] == pytest.approx(1 / 0.9 - 1)


def test_a_missing_end_sample_makes_the_last_finite_one_the_edge():
    grid = make_grid(-0.25, 1.25, 13)
    f = parabola(grid, vertex=3.0)
    f[-1] = float("nan")  # the best sample is missing: the next one is the edge now
    s = curve_summary(grid, f, eps=1e-9)
    assert s["censored"] == 1.0 and s["floor_a"] == float(grid[-2])


# ---------------------------------------------------------------- alpha vs Cockpit's


def cockpit_alpha(f, df):
    """Cockpit's alpha (cockpit/quantities/alpha.py, equal variances): the parabola
    w0 + w1 a + w2 a^2 fitted by least squares to f(0), f(1), f'(0), f'(1); 2 / abar - 1
    with abar = -w1 / w2 (-1 for a concave fit)."""
    phi = np.array([[1, 0, 0], [1, 1, 1], [0, 1, 0], [0, 1, 2]], dtype=float)
    w = np.linalg.lstsq(phi, np.array([f(0.0), f(1.0), df(0.0), df(1.0)]), rcond=None)[0]
    return -1.0 if w[2] < 0 else 2.0 / (-w[1] / w[2]) - 1.0


@pytest.mark.parametrize("cubic, agree", [(0.0, True), (1.5, False)])
def test_alpha_is_cockpits_formula_but_not_its_fit(cubic, agree):
    """docs/metrics.md: the same number on an exact parabola (floor at 0.4321), not on a
    curve with a cubic term, where the four-point fit and the sampled floor part."""
    def f(a):
        return parabola(a) + cubic * (a - 0.4321) ** 3

    def df(a):
        return 6.0 * (a - 0.4321) + 3 * cubic * (a - 0.4321) ** 2

    grid = make_grid(-0.25, 1.25, 13)
    ours = curve_summary(grid, f(grid), eps=1e-9)["alpha"]
    theirs = cockpit_alpha(f, df)
    if agree:
        assert ours == pytest.approx(theirs, abs=1e-9) and ours == pytest.approx(1 / 0.4321 - 1)
    else:
        assert abs(ours - theirs) > 0.1
