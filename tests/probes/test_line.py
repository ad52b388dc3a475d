"""Line probe on an exact quadratic: the curve, floor, height, alpha and noise are closed forms.

Full-batch GD on least squares (float64): u = -lr g, f(a) = L0 - a lr |g|^2 + a^2 lr^2 g^T H g / 2,
so a* = 1 / (lr kappa) with kappa = g^T H g / |g|^2. Tolerances: 1e-9 relative (round-off of
float64 sums over 40 examples and of the parabola refinement).
"""

import math

import pytest
import torch

from sgdwalk.config import WalkConfig
from sgdwalk.errors import ConfigError
from sgdwalk.functional.curve import make_grid
from sgdwalk.probes.line import Line
from sgdwalk.probes.presets import build_probes
from sgdwalk.probes.walk import Walk

RTOL = 1e-9


def closed_form(problem, w, lr):
    g = problem.grad(w)
    H = problem.H
    u = -lr * g
    L0 = problem.loss(w)
    gu, uhu = float(g @ u), float(u @ H @ u)
    a = -gu / uhu
    F = L0 - gu * gu / (2 * uhu)
    f1 = L0 + gu + 0.5 * uhu
    return {"u": u, "L0": L0, "gu": gu, "uhu": uhu, "a": a, "F": F, "f1": f1,
            "kappa": float(g @ H @ g) / float(g @ g)}


def one_gd_step(kit, lr_kappa, cfg=None, seed=0):
    problem = kit.make_least_squares(seed=seed)
    w0 = torch.zeros(problem.X.shape[1], dtype=torch.float64)
    g = problem.grad(w0)
    kappa = float(g @ problem.H @ g) / float(g @ g)
    lr = lr_kappa / kappa
    model = problem.model(w0)
    cfg = cfg or WalkConfig(preset="line", line_sources=("batch", "probe"))
    walk = Walk(model, build_probes(cfg), loss_fn=kit.half_squared_error,
                probe_set=(problem.X, problem.y), probe_batch=1000)
    kit.gd_step(problem, walk, model, lr)
    return problem, w0, lr, walk


@pytest.mark.parametrize("lr_kappa", [0.85, 1.5, 2.5])
def test_gd_floor_height_alpha_match_closed_forms(kit, lr_kappa):
    problem, w0, lr, walk = one_gd_step(kit, lr_kappa)
    (step, v), = [r for r in walk.rows if r[0] == 0]
    c = closed_form(problem, w0, lr)
    assert c["a"] == pytest.approx(1.0 / lr_kappa, rel=1e-12)
    for src in ("batch", "probe"):
        assert v[f"line_{src}_floor_a"] == pytest.approx(c["a"], rel=RTOL)
        assert v[f"line_{src}_floor_loss"] == pytest.approx(c["F"], rel=RTOL)
        assert v[f"line_{src}_height"] == pytest.approx(c["L0"] - c["F"], rel=1e-7)
        assert v[f"line_{src}_height_end"] == pytest.approx(c["f1"] - c["F"], rel=1e-7)
        assert v[f"line_{src}_alpha"] == pytest.approx(lr_kappa - 1.0, rel=1e-7)
        assert v[f"line_{src}_quad_curv"] == pytest.approx(c["uhu"], rel=1e-7)
        assert v[f"line_{src}_quad_r2"] == pytest.approx(1.0, abs=1e-12)
        assert v[f"line_{src}_convex"] == 1.0
        curve = v[f"line_{src}"]
        grid = make_grid(-0.25, 1.25, 13)
        expected = torch.tensor([problem.loss(w0 + float(a) * c["u"]) for a in grid],
                                dtype=torch.float64)
        torch.testing.assert_close(curve, expected, rtol=1e-12, atol=0)
    # lr kappa < 1: the floor lies beyond the step; > 1: inside it (and counts as interior
    # when it is deeper than the measured noise); > 2: SGD bounced to the higher wall
    deep = min(c["L0"], c["f1"]) - c["F"] > v["line_probe_eps"]
    assert v["line_probe_interior"] == float(lr_kappa > 1 and deep)
    assert (v["line_probe_floor_a"] < 1) == (lr_kappa > 1)
    assert (v["line_probe_height_end"] > v["line_probe_height"]) == (lr_kappa > 2)
    assert v["line_probe_step_barrier"] == 0.0 and v["line_probe_crossing"] == 0.0


def test_eps_is_twice_the_paired_standard_error(kit):
    problem, w0, lr, walk = one_gd_step(kit, 1.5)
    v = walk.rows[-1][1]
    c = closed_form(problem, w0, lr)
    grid = make_grid(-0.25, 1.25, 13)
    a_min = float(grid[torch.argmin(torch.tensor([problem.loss(w0 + a * c["u"]) for a in grid]))])
    d = problem.per_example(w0) - problem.per_example(w0 + a_min * c["u"])
    expected = 2 * float(d.std(correction=1)) / math.sqrt(len(d))
    assert v["line_probe_eps"] == pytest.approx(expected, rel=1e-9)


def test_grid_is_logged_once_before_the_first_step(kit):
    cfg = WalkConfig(preset="line", line_min=-0.5, line_max=1.5, line_points=5)
    _, _, _, walk = one_gd_step(kit, 1.5, cfg)
    headers = [v for s, v in walk.rows if s == -1]
    assert len(headers) == 1
    torch.testing.assert_close(headers[0]["line_grid"], make_grid(-0.5, 1.5, 5))
    assert headers[0]["line_grid"].tolist() == [-0.5, 0.0, 0.5, 1.0, 1.5]
    assert len(walk.rows[-1][1]["line_probe"]) == 5


def test_missing_source_fails_at_construction(kit):
    model = kit.tiny_mlp()
    with pytest.raises(ConfigError, match="probe_set"):
        Walk(model, "line")
    with pytest.raises(ConfigError, match="heldout"):
        Walk(model, build_probes(WalkConfig(preset="line", line_sources=("heldout",))),
             probe_set=kit.classification_data())
    Walk(model, build_probes(WalkConfig(preset="line", line_sources=("batch",))))  # fine


def test_grid_must_contain_both_ends():
    with pytest.raises(ValueError, match="containing 0 and 1"):
        Line(grid=[0.0, 0.5, 0.9])
    with pytest.raises(ValueError, match="sources"):
        Line(sources=("train",))


def test_interior_floor_above_noise_on_a_large_sample(kit):
    """With 4000 examples the measured noise is small: a floor at a* = 1/1.8 is interior."""
    problem = kit.make_least_squares(n=4000)
    w0 = torch.zeros(problem.X.shape[1], dtype=torch.float64)
    g = problem.grad(w0)
    lr = 1.8 * float(g @ g) / float(g @ problem.H @ g)
    model = problem.model(w0)
    walk = Walk(model, "line", loss_fn=kit.half_squared_error,
                probe_set=(problem.X, problem.y), probe_batch=1000)
    v = kit.gd_step(problem, walk, model, lr).rows[-1][1]
    c = closed_form(problem, w0, lr)
    assert v["line_probe_floor_a"] == pytest.approx(1 / 1.8, rel=RTOL)
    assert 0 < v["line_probe_eps"] < min(c["L0"], c["f1"]) - c["F"]
    assert v["line_probe_interior"] == 1.0
