"""Curvature and sharpness probes against closed forms and autograd's full Hessian."""

import pytest
import torch

from sgdwalk.config import WalkConfig
from sgdwalk.probes.curvature import Curvature
from sgdwalk.probes.presets import build_probes
from sgdwalk.probes.sharpness import Sharpness
from sgdwalk.probes.walk import Walk


@pytest.mark.parametrize("lr_kappa", [0.5, 1.5, 2.5])
def test_curvature_along_a_gd_step_is_the_closed_form(kit, lr_kappa):
    """kappa = g^T H g / |g|^2 for u = -lr g; the predicted floor is 1 / (lr kappa) and
    agrees with the line probe's floor (tolerance 1e-10 relative)."""
    problem = kit.make_least_squares()
    w0 = torch.zeros(problem.X.shape[1], dtype=torch.float64)
    g = problem.grad(w0)
    kappa = float(g @ problem.H @ g) / float(g @ g)
    lr = lr_kappa / kappa
    model = problem.model(w0)
    cfg = WalkConfig(preset="curvature", sharpness="off", line_sources=("batch",))
    walk = Walk(model, build_probes(cfg), loss_fn=kit.half_squared_error)
    v = kit.gd_step(problem, walk, model, lr).rows[-1][1]
    u = -lr * g
    assert v["curv_uhu"] == pytest.approx(float(u @ problem.H @ u), rel=1e-10)
    assert v["curv_kappa"] == pytest.approx(kappa, rel=1e-10)
    assert v["curv_lr_kappa"] == pytest.approx(lr_kappa, rel=1e-10)
    assert v["curv_pred_floor_a"] == pytest.approx(1 / lr_kappa, rel=1e-10)
    if lr_kappa > 1:  # inside the grid: the refined grid floor is exact on a parabola
        assert v["line_batch_floor_a"] == pytest.approx(v["curv_pred_floor_a"], rel=1e-9)


def test_sharpness_on_a_quadratic_is_the_spectrum(kit):
    """Top-3 eigenvalues of H = X^T X / n and the gradient's share of their eigenspace."""
    problem = kit.make_least_squares(P=10)
    w0 = torch.zeros(10, dtype=torch.float64)
    model = problem.model(w0)
    probe = Sharpness(k=3, tol=1e-10, max_iter=50)
    walk = Walk(model, [probe], loss_fn=kit.half_squared_error,
                probe_set=(problem.X, problem.y), probe_batch=16)  # 3 chunks
    lr = 0.01
    v = kit.gd_step(problem, walk, model, lr).rows[-1][1]
    lams, vecs = torch.linalg.eigh(problem.H)
    top = lams.flip(0)[:3]
    torch.testing.assert_close(v["sharp_eigs"], top, rtol=1e-9, atol=0)
    assert v["sharp_lambda_max"] == pytest.approx(float(top[0]), rel=1e-9)
    assert v["sharp_lr_lambda"] == pytest.approx(lr * float(top[0]), rel=1e-9)
    assert v["sharp_residual"] < 1e-10 and 3 <= v["sharp_matvecs"] <= 10
    g = problem.grad(w0)
    coords = vecs.flip(1)[:, :3].T @ g
    assert v["align_top1"] == pytest.approx(float(coords[0] ** 2 / (g @ g)), rel=1e-8)
    assert v["align_topk"] == pytest.approx(float(coords @ coords / (g @ g)), rel=1e-8)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_sharpness_of_a_network_matches_eigvalsh_of_its_hessian(kit, batchnorm):
    """Tiny tanh MLP (31 or 39 parameters), probe set in 3 chunks: Lanczos through the
    probe against torch.linalg.eigvalsh of autograd's full Hessian (1e-8 relative)."""
    model = kit.tiny_mlp(batchnorm=batchnorm)
    x, y = kit.classification_data(n=24)
    chunks = list(zip(x.split(8), y.split(8)))
    theta = kit.flat_params(model)
    H = torch.autograd.functional.hessian(kit.hand_mlp_loss(model, chunks), theta)
    expected = torch.linalg.eigvalsh(H).flip(0)[:2]
    probe = Sharpness(k=2, tol=1e-10, max_iter=theta.numel())
    walk = Walk(model, [probe], probe_set=chunks)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # measure at theta_0
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    walk.before_step(loss.detach(), (x, y))
    opt.step()
    v = walk.after_step(opt)
    torch.testing.assert_close(v["sharp_eigs"], expected, rtol=1e-8, atol=1e-12)


def test_warm_start_saves_matvecs_and_is_checkpointed(kit):
    problem = kit.make_least_squares(n=200, P=60, spread=10.0)
    w0 = torch.zeros(60, dtype=torch.float64)
    model = problem.model(w0)
    probe = Sharpness(k=1, tol=1e-6, max_iter=60)
    walk = Walk(model, [probe], loss_fn=kit.half_squared_error,
                probe_set=(problem.X, problem.y), probe_batch=1000)
    kit.gd_step(problem, walk, model, lr=1e-3, steps=2)
    (_, first), (_, second) = [r for r in walk.rows if r[0] >= 0]
    # H does not change on a quadratic: the warm start is already the eigenvector
    assert second["sharp_matvecs"] < first["sharp_matvecs"]
    assert second["sharp_lambda_max"] == pytest.approx(first["sharp_lambda_max"], rel=1e-6)
    state = walk.state_dict()
    again = Sharpness(k=1, tol=1e-6, max_iter=60)
    Walk(problem.model(w0), [again], loss_fn=kit.half_squared_error,
         probe_set=(problem.X, problem.y)).load_state_dict(state)
    assert torch.equal(again.vectors, probe.vectors)


def test_curvature_uses_the_step_batch_only(kit):
    """A probe on the step's batch needs no probe set."""
    Walk(kit.tiny_mlp(), [Curvature()])
    with pytest.raises(Exception, match="probe_set"):
        Walk(kit.tiny_mlp(), [Sharpness()])
