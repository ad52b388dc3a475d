"""Preconditioned sharpness: P is the preconditioner of the update Adam/AdamW applied, and
the probe's eigenvalues and step curvature equal eigvalsh of P^-1/2 H P^-1/2 and
u^T H u / u^T P u from autograd's full Hessian (tiny tanh MLP and tiny GPT, float64)."""

import pytest
import torch

from sgdwalk.config import WalkConfig
from sgdwalk.errors import ConfigError
from sgdwalk.losses import sequence_cross_entropy
from sgdwalk.probes.precond_sharpness import PrecondSharpness, adam_preconditioner
from sgdwalk.probes.presets import build_probes
from sgdwalk.probes.walk import Walk


def adam_steps(kit, opt_cls, steps=3, **opt_kw):
    """A tiny MLP trained `steps` steps by `opt_cls` with the probe on the last step."""
    model = kit.tiny_mlp()
    x, y = kit.classification_data(n=24)
    chunks = list(zip(x.split(8), y.split(8)))
    probe = PrecondSharpness(schedule=lambda s: s == steps - 1, k=2, tol=1e-11,
                             max_iter=31)
    walk = Walk(model, [probe], probe_set=chunks)
    opt = opt_cls(model.parameters(), lr=0.05, **opt_kw)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        walk.before_step(loss.detach(), (x, y))
        theta = kit.flat_params(model)
        opt.step()
        values = walk.after_step(opt)
    return model, opt, chunks, (x, y), theta, values


@pytest.mark.parametrize("opt_cls, kw", [
    (torch.optim.Adam, {}),
    (torch.optim.Adam, {"amsgrad": True, "betas": (0.8, 0.95), "eps": 1e-3}),
    (torch.optim.AdamW, {"weight_decay": 0.1}),
])
def test_p_is_the_preconditioner_of_the_applied_update(kit, opt_cls, kw):
    """u_t = -lr P^-1 m_t (- lr wd theta_t for AdamW), m_t the optimizer's exp_avg: the
    definition of P (Cohen et al. 2022) reproduces the step torch took, to 1e-12."""
    model, opt, _, _, theta, _ = adam_steps(kit, opt_cls, **kw)
    params = list(model.parameters())
    p, beta1 = adam_preconditioner(opt, params, theta)
    assert beta1 == opt.param_groups[0]["betas"][0]
    m = torch.cat([opt.state[q]["exp_avg"].reshape(-1) for q in params])
    u = kit.flat_params(model) - theta
    wd = kw.get("weight_decay", 0.0)
    torch.testing.assert_close(u, -0.05 * m / p - 0.05 * wd * theta, rtol=1e-10, atol=1e-14)


def exact_values(kit, model, opt, chunks, batch, theta):
    p, _ = adam_preconditioner(opt, list(model.parameters()), theta)
    d = p.rsqrt()
    H = torch.autograd.functional.hessian(kit.hand_mlp_loss(model, chunks), theta)
    S = d[:, None] * H * d[None, :]
    Hb = torch.autograd.functional.hessian(kit.hand_mlp_loss(model, [batch]), theta)
    u = kit.flat_params(model) - theta
    return torch.linalg.eigvalsh(S).flip(0)[:2], float(u @ Hb @ u) / float(u @ (p * u))


@pytest.mark.parametrize("opt_cls", [torch.optim.Adam, torch.optim.AdamW])
def test_eigenvalues_and_step_curvature_equal_the_full_hessian(kit, opt_cls):
    """31 parameters: the top-2 eigenvalues of P^-1/2 H P^-1/2 (probe set, 3 chunks) and
    u^T H u / u^T P u (the step's batch) to 1e-8 relative; lr x and the edge ratio follow."""
    model, opt, chunks, batch, theta, v = adam_steps(kit, opt_cls)
    top, kappa = exact_values(kit, model, opt, chunks, batch, theta)
    assert top[0] > 1.0  # P shrinks to ~ |g|: the preconditioned spectrum is large
    torch.testing.assert_close(v["psharp_eigs"], top, rtol=1e-8, atol=0)
    assert v["psharp_lambda_max"] == pytest.approx(float(top[0]), rel=1e-8)
    assert v["psharp_lr_lambda"] == pytest.approx(0.05 * float(top[0]), rel=1e-8)
    assert v["psharp_edge"] == pytest.approx(0.05 * float(top[0]) * 0.1 / 3.8, rel=1e-8)
    assert v["psharp_residual"] < 1e-9
    assert v["pcurv_kappa"] == pytest.approx(kappa, rel=1e-8)
    assert v["pcurv_lr_kappa"] == pytest.approx(0.05 * kappa, rel=1e-8)
    documented = {"psharp_eigs", "psharp_lambda_max", "psharp_lr_lambda", "psharp_edge",
                  "psharp_residual", "psharp_matvecs", "pcurv_kappa", "pcurv_lr_kappa"}
    assert set(v) == documented  # = test_contract.PRECOND, each a row of docs/metrics.md


def test_a_gpt_through_attention(kit):
    """The tiny float64 GPT (288 parameters) after 2 AdamW steps: the top eigenvalue of
    P^-1/2 H P^-1/2 from the full Hessian, to 1e-8 relative."""
    model = kit.tiny_gpt()
    probe_set = [kit.sequences(4, 1)]
    x, y = kit.sequences(4, 3)
    probe = PrecondSharpness(schedule=lambda s: s == 1, k=1, tol=1e-11, max_iter=150)
    walk = Walk(model, [probe], loss_fn=sequence_cross_entropy, probe_set=probe_set)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    for _ in range(2):
        opt.zero_grad()
        loss = sequence_cross_entropy(model(x), y).mean()
        loss.backward()
        walk.before_step(loss.detach(), (x, y))
        theta = kit.flat_params(model)
        opt.step()
        v = walk.after_step(opt)
    p, _ = adam_preconditioner(opt, list(model.parameters()), theta)
    d = p.rsqrt()
    S = d[:, None] * kit.gpt_hessian(model, probe_set, theta) * d[None, :]
    top = torch.linalg.eigvalsh(S)[-1]
    assert v["psharp_lambda_max"] == pytest.approx(float(top), rel=1e-8)


@pytest.mark.parametrize("make", [
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    lambda ps: torch.optim.RMSprop(ps, lr=0.1),
    lambda ps: None,
])
def test_refused_without_a_diagonal_preconditioner(kit, make):
    model = kit.tiny_mlp()
    x, y = kit.classification_data(n=8)
    walk = Walk(model, [PrecondSharpness()], probe_set=(x, y))
    opt = make(list(model.parameters()))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    walk.before_step(loss.detach(), (x, y))
    if opt is not None:
        opt.step()
    with pytest.raises(ConfigError, match=r"^precond_sharpness: expected an optimizer with "
                                          r"a diagonal preconditioner \(Adam or AdamW\), got "):
        walk.after_step(opt)


def test_adam_trajectory_is_bit_identical_with_the_probe(kit):
    """Reading the optimizer's state never changes it: AdamW's parameters and moments after
    3 steps are the same bits with and without the probe on every step."""
    runs = []
    for probes in ([], [PrecondSharpness(k=1, tol=1e-6, max_iter=10)]):
        model = kit.tiny_mlp()
        x, y = kit.classification_data(n=24)
        walk = Walk(model, probes, probe_set=(x, y))
        opt = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1)
        for _ in range(3):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            walk.before_step(loss.detach(), (x, y))
            opt.step()
            values = walk.after_step(opt)
        assert ("psharp_lambda_max" in values) == bool(probes)
        runs.append([*model.parameters()] + [s[k] for s in opt.state.values()
                                             for k in ("exp_avg", "exp_avg_sq")])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_walk_keys_and_their_checks():
    probes = build_probes(WalkConfig(preset="off", precond_sharpness="every:5", precond_k=2,
                                     precond_max_iter=7))
    (probe,) = probes
    assert (probe.k, probe.max_iter, probe.schedule(5), probe.schedule(6)) == (2, 7, True, False)
    assert "precond_sharpness" not in {p.name for p in build_probes(WalkConfig(preset="full"))}
    with pytest.raises(ConfigError, match=r"walk.precond_tol: expected > 0, got -1.0"):
        WalkConfig(precond_tol=-1.0)
