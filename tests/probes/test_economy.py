"""Economy line: exact on a quadratic, and close to the full batch line on real training."""

import math
import statistics

import pytest
import torch

from sgdwalk.config import WalkConfig
from sgdwalk.probes.economy import Economy
from sgdwalk.probes.presets import build_probes
from sgdwalk.probes.walk import Walk


@pytest.mark.parametrize("jvp", [False, True])
@pytest.mark.parametrize("lr_kappa", [0.9, 1.5, 2.5])
def test_economy_fit_is_the_full_curve_on_a_quadratic(kit, jvp, lr_kappa):
    """Both the quadratic and the Hermite cubic reproduce an exact parabola (1e-9)."""
    problem = kit.make_least_squares()
    w0 = torch.zeros(problem.X.shape[1], dtype=torch.float64)
    g = problem.grad(w0)
    lr = lr_kappa * float(g @ g) / float(g @ problem.H @ g)
    model = problem.model(w0)
    cfg = WalkConfig(preset="line", line_sources=("batch",), economy_jvp=jvp)
    walk = Walk(model, build_probes(cfg), loss_fn=kit.half_squared_error)
    v = kit.gd_step(problem, walk, model, lr).rows[-1][1]
    u = -lr * g
    uhu = float(u @ problem.H @ u)
    assert v["econ_df0"] == pytest.approx(float(g @ u), rel=1e-12)
    assert v["econ_f1"] == pytest.approx(problem.loss(w0 + u), rel=1e-12)
    assert v["econ_curv"] == pytest.approx(uhu, rel=1e-9)
    if jvp:
        assert v["econ_df1"] == pytest.approx(float(problem.grad(w0 + u) @ u), rel=1e-9)
    else:
        assert "econ_df1" not in v
    for key in ("floor_a", "floor_loss", "height", "height_end"):
        assert v[f"econ_{key}"] == pytest.approx(v[f"line_batch_{key}"], rel=1e-9, abs=1e-12)
    assert v["econ_floor_a"] == pytest.approx(1 / lr_kappa, rel=1e-9)


def test_floor_is_clipped_to_the_line_bracket(kit):
    problem = kit.make_least_squares()
    w0 = torch.zeros(problem.X.shape[1], dtype=torch.float64)
    g = problem.grad(w0)
    lr = 0.5 * float(g @ g) / float(g @ problem.H @ g)  # a* = 2, beyond line_max
    model = problem.model(w0)
    cfg = WalkConfig(preset="economy", line_min=-0.5, line_max=1.5)
    walk = Walk(model, build_probes(cfg), loss_fn=kit.half_squared_error)
    v = kit.gd_step(problem, walk, model, lr).rows[-1][1]
    assert v["econ_floor_a"] == 1.5


def test_economy_evaluates_f0_itself_when_training_had_dropout(kit):
    """With dropout the training loss is another function: f(0) comes from a probing
    forward, so a zero step gives a zero height."""
    model, _, walk = kit.manual_run(kit.DropoutNet, {"probes": [Economy()]}, steps=3, lr=0.0)
    for _, v in walk.rows:
        assert v["econ_height"] == 0.0 and v["econ_df0"] == 0.0


def _economy_vs_line(kit, lr, jvp):
    from sgdwalk.models.mlp import MLP

    cfg = WalkConfig(preset="economy", line="every:1", line_sources=("batch",),
                     economy_jvp=jvp)
    _, _, walk = kit.manual_run(lambda: MLP(64, (64, 32), 10, True),
                                {"probes": build_probes(cfg)}, steps=300, lr=lr)
    rows = [v for s, v in walk.rows if s >= 0]
    da = [abs(v["econ_floor_a"] - v["line_batch_floor_a"]) for v in rows]
    dh = [abs(v["econ_height"] - v["line_batch_height"]) / abs(v["line_batch_height"])
          for v in rows if v["line_batch_height"] != 0]
    return statistics.median(da), statistics.median(dh)


@pytest.mark.parametrize(
    "jvp, max_da, max_dh",
    [(False, 0.3, 0.1), (True, 0.1, 0.03)],
)
def test_economy_tracks_the_batch_line_on_real_training(kit, capsys, jvp, max_da, max_dh):
    """BN MLP 64-64-32-10 on digits, 300 SGD steps at lr 0.5, batch 32: the economy model
    against the 13-point batch line of the same steps. Measured (torch 2.13, CPU):
    quadratic median |da*| 0.18, median relative height error 0.057; cubic (jvp) 0.0 and
    0.010. Most floors sit at the bracket end 1.25 (both then agree exactly); the curves
    are far from parabolas (cross-entropy decays like an exponential along the step),
    which is what the quadratic misses."""
    med_a, med_h = _economy_vs_line(kit, lr=0.5, jvp=jvp)
    with capsys.disabled():
        print(f"\neconomy ({'cubic' if jvp else 'quadratic'}) vs batch line, 300 steps: "
              f"median |da*| = {med_a:.4f}, median relative height error = {med_h:.4f}")
    assert med_a < max_da and med_h < max_dh


def test_slope_comes_from_the_trajectory_pass_and_matches_float64(monkeypatch):
    """With the trajectory on, f'(0) = <g_t, u_t> is its exact float64 sum (within 1e-12 of
    NumPy float64) and no second pass over the vectors (dot64) is made."""
    import numpy as np

    import sgdwalk.functional.vector as vector

    def no_second_pass(*args, **kwargs):
        raise AssertionError("dot64 called: <g, u> computed twice")

    monkeypatch.setattr(vector, "dot64", no_second_pass)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9, weight_decay=1e-2)
    walk = Walk(model, build_probes(WalkConfig(preset="economy")))
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    for _ in range(3):
        before = [p.detach().clone() for p in model.parameters()]
        walk.step(opt, x, y)
        g = np.concatenate([p.grad.double().numpy().ravel() for p in model.parameters()])
        u = np.concatenate([(p.detach() - b).double().numpy().ravel()
                            for p, b in zip(model.parameters(), before)])
        assert walk.rows[-1][1]["econ_df0"] == pytest.approx(float(g @ u), rel=1e-12)


# -- walk.economy_reach = "peak": the line at the length of a peak-lr step -----------------


def _quadratic_step(kit, lr_kappa: float, reach: str, peak_ratio: float, jvp: bool = False):
    """One GD step on least squares at lr = lr_kappa g.g / g.H.g (exact floor a* =
    1 / lr_kappa), the economy probe told the peak lr is peak_ratio x lr. Returns (row, the
    problem, w0, u)."""
    problem = kit.make_least_squares()
    w0 = torch.zeros(problem.X.shape[1], dtype=torch.float64)
    g = problem.grad(w0)
    lr = lr_kappa * float(g @ g) / float(g @ problem.H @ g)
    model = problem.model(w0)
    cfg = WalkConfig(preset="economy", economy_jvp=jvp, economy_reach=reach,
                     economy_lr_peak=peak_ratio * lr)
    walk = Walk(model, build_probes(cfg), loss_fn=kit.half_squared_error)
    return kit.gd_step(problem, walk, model, lr).rows[-1][1], problem, w0, -lr * g


@pytest.mark.parametrize("jvp", [False, True])
def test_peak_reach_gives_the_exact_floor_beyond_the_step(kit, jvp):
    """lr_t a quarter of the quadratic's critical lr (a* = 4 steps, beyond the step bracket
    [-0.25, 1.25]) and a peak lr 5 x lr_t: a_2 = 5, bracket [-1.25, 6.25], and the fit
    through f(0), f'(0), f(5) is the exact line: floor at 4 steps, its loss and height."""
    v, problem, w0, u = _quadratic_step(kit, 0.25, "peak", 5.0, jvp)
    a2 = v["econ_reach"]
    assert a2 == pytest.approx(5.0, rel=1e-14)
    assert v["econ_f1"] == pytest.approx(problem.loss(w0 + a2 * u), rel=1e-12)
    assert v["econ_floor_a"] == pytest.approx(4.0, rel=1e-9)
    floor = problem.loss(w0 + 4.0 * u)
    assert v["econ_floor_loss"] == pytest.approx(floor, rel=1e-9)
    assert v["econ_height"] == pytest.approx(problem.loss(w0) - floor, rel=1e-9)
    assert v["econ_height_end"] == pytest.approx(problem.loss(w0 + a2 * u) - floor, rel=1e-9)
    assert v["econ_curv"] == pytest.approx(float(u @ problem.H @ u), rel=1e-9)  # per step^2
    if jvp:
        assert v["econ_df1"] == pytest.approx(float(problem.grad(w0 + a2 * u) @ u), rel=1e-9)
    step, *_ = _quadratic_step(kit, 0.25, "step", 5.0, jvp)  # the step's bracket: a bound
    assert step["econ_floor_a"] == 1.25 and "econ_reach" not in step


def test_peak_reach_clips_to_the_scaled_bracket(kit):
    """a* = 10 steps, a_2 = 5: the floor is the scaled bracket's end 1.25 x 5, exactly."""
    v, *_ = _quadratic_step(kit, 0.1, "peak", 5.0)
    assert v["econ_floor_a"] == 1.25 * v["econ_reach"]


@pytest.mark.parametrize("jvp", [False, True])
def test_peak_reach_at_the_peak_lr_is_the_step_fit_bit_for_bit(kit, jvp):
    """AdamW at its peak lr (lr_t = lr_peak, a_2 = 1) on digits: every stored value of
    "peak" equals "step"'s bit for bit, with no extra forward."""
    from sgdwalk.models.mlp import MLP

    rows = {}
    for reach in ("step", "peak"):
        cfg = WalkConfig(preset="economy", economy_jvp=jvp, economy_reach=reach,
                         economy_lr_peak=3e-3)
        _, _, walk = kit.manual_run(
            lambda: MLP(64, (32,), 10, True), {"probes": build_probes(cfg)}, steps=6,
            optimizer=lambda ps: torch.optim.AdamW(ps, lr=3e-3, weight_decay=0.1))
        rows[reach] = [(s, v) for s, v in walk.rows if s >= 0]
    assert all(v.pop("econ_reach") == 1.0 for _, v in rows["peak"])
    assert [s for s, _ in rows["peak"]] == [s for s, _ in rows["step"]]
    for (_, a), (_, b) in zip(rows["peak"], rows["step"]):
        assert a.keys() == b.keys() and any(k.startswith("econ_") for k in a)
        for k in a:
            if isinstance(a[k], torch.Tensor):
                assert torch.equal(a[k], b[k]), k
            else:
                assert a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])), k


def test_peak_reach_at_the_peak_makes_no_extra_forward(kit, monkeypatch):
    from sgdwalk.probes.evaluator import LossEvaluator

    def no_line(*args, **kwargs):
        raise AssertionError("a line forward at a_2 = 1")

    monkeypatch.setattr(LossEvaluator, "line", no_line)
    v, *_ = _quadratic_step(kit, 0.9, "peak", 1.0)
    assert v["econ_reach"] == 1.0 and v["econ_floor_a"] == pytest.approx(1 / 0.9, rel=1e-9)


def test_a_run_scales_by_its_schedules_peak_lr(tiny_config, tmp_path):
    """A wsd run with economy_reach = "peak": econ_reach = optim.lr / lr at every step (the
    peak lr comes from optim.lr), 1 in the stable phase and above 1 in warmup and decay."""
    import numpy as np

    from sgdwalk.experiment import train
    from sgdwalk.store import read_run

    cfg = tiny_config(**{"walk.preset": "economy", "walk.economy_reach": "peak",
                         "optim.schedule": "wsd", "optim.warmup_steps": "2",
                         "optim.decay_fraction": "0.5", "optim.lr_end_fraction": "0.1"})
    table = read_run(train(cfg, tmp_path, progress=False).run_dir).sort_index()
    rows = table[table.index >= 0]
    want = np.maximum(1.0, cfg.optim.lr / rows["lr"].to_numpy())
    np.testing.assert_allclose(rows["econ_reach"].to_numpy(), want, rtol=1e-12)
    assert (want == 1.0).any() and (want > 1.0).sum() >= 3


def test_bad_reach_settings_are_one_line_config_errors():
    from sgdwalk.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^walk.economy_reach: expected step or peak, "
                                          r"got 'far'$"):
        WalkConfig(economy_reach="far")
    with pytest.raises(ConfigError, match=r"^walk.economy_lr_peak: expected a finite lr > 0"):
        WalkConfig(economy_lr_peak=-1.0)
    with pytest.raises(ConfigError, match=r"^walk.economy_lr_peak: expected the schedule's "
                                          r"peak lr .*, got none$"):
        build_probes(WalkConfig(preset="economy", economy_reach="peak"))
