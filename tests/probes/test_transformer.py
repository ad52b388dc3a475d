"""The probes on a GPT: Hessian-vector products through attention (whose fused kernel has no
double backward) equal autograd's full Hessian in float64, and dropout is off while probing."""

import pytest
import torch
from torch.func import functional_call

from sgdwalk.config import WalkConfig
from sgdwalk.functional.flat import ParamLayout
from sgdwalk.losses import sequence_cross_entropy
from sgdwalk.models.gpt import CausalSelfAttention
from sgdwalk.probes.curvature import Curvature
from sgdwalk.probes.presets import build_probes
from sgdwalk.probes.sharpness import Sharpness
from sgdwalk.probes.walk import Walk

# torch.func.jvp (economy_jvp) loads torch's own jit-scripted decompositions on first use
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script`:DeprecationWarning")


def one_step(walk, model, x, y, lr=0.05):
    """One SGD step on (x, y) with the walk around it; the step's values."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    loss = sequence_cross_entropy(model(x), y).mean()
    loss.backward()
    walk.before_step(loss.detach(), (x, y))
    opt.step()
    return walk.after_step(opt)


def test_fused_attention_has_no_second_derivative(kit):
    """What an HVP through the model's default (fused) path hits without the walk's hook."""
    model = kit.tiny_gpt().eval()
    x, y = kit.sequences(2, 0)
    views = ParamLayout.of(model).views

    def loss(flat):
        return sequence_cross_entropy(functional_call(model, views(flat), (x,)), y).mean()

    with pytest.raises(RuntimeError, match="derivative for .*flash_attention"):
        torch.autograd.functional.hessian(loss, kit.flat_params(model))


def test_sharpness_and_curvature_on_a_gpt_equal_the_full_hessian(kit):
    """Lanczos top-3 against eigvalsh and u^T H u against the full Hessian (288 parameters,
    probe set in 2 chunks): 1e-9 relative; the model's attention flags are untouched."""
    model = kit.tiny_gpt()
    probe_set = [kit.sequences(3, 1), kit.sequences(3, 2)]
    x, y = kit.sequences(4, 3)
    H_probe = kit.gpt_hessian(model, probe_set)
    H_batch = kit.gpt_hessian(model, [(x, y)])
    sharp = Sharpness(k=3, tol=1e-11, max_iter=120)
    walk = Walk(model, [Curvature(), sharp], loss_fn=sequence_cross_entropy,
                probe_set=probe_set)
    theta = kit.flat_params(model)
    v = one_step(walk, model, x, y)
    top = torch.linalg.eigvalsh(H_probe).flip(0)[:3]
    assert top[0] > 1e-3  # not vacuous
    torch.testing.assert_close(v["sharp_eigs"], top, rtol=1e-9, atol=1e-12)
    u = kit.flat_params(model) - theta
    assert u.abs().max() > 1e-4
    uhu = float(u @ H_batch @ u)
    assert v["curv_uhu"] == pytest.approx(uhu, rel=1e-9)
    assert v["curv_kappa"] == pytest.approx(uhu / float(u @ u), rel=1e-9)
    assert all(not m.math for m in model.modules() if isinstance(m, CausalSelfAttention))


def run_full(model, x, y, probe_set):
    cfg = WalkConfig(preset="full", line_points=5, sharpness_k=2, sharpness_tol=1e-10,
                     sharpness_max_iter=60, economy_jvp=True, noise_microbatches=2,
                     line_sources=("probe", "batch"))
    walk = Walk(model, build_probes(cfg), loss_fn=sequence_cross_entropy, probe_set=probe_set)
    # the same gradient and update for both models: those of the dropout-free forward
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    opt.zero_grad()
    was = model.training
    model.eval()
    loss = sequence_cross_entropy(model(x), y).mean()
    loss.backward()
    model.train(was)
    walk.before_step(loss.detach(), (x, y))
    opt.step()
    return walk.after_step(opt)


def test_dropout_is_off_while_probing_and_training_mode_is_restored(kit):
    """A GPT with dropout 0.5, in train mode, measures what the same GPT with dropout 0 does
    (every probe of the full preset, economy's jvp included), twice alike; its modules are
    in train mode afterwards."""
    probe_set = [kit.sequences(4, 1)]
    x, y = kit.sequences(4, 3)
    values = []
    for dropout in (0.5, 0.5, 0.0):
        model = kit.tiny_gpt(dropout=dropout).train()
        values.append(run_full(model, x, y, probe_set))
        assert all(m.training for m in model.modules())
    noisy, again, clean = values
    assert clean.keys() == noisy.keys() and {"curv_uhu", "sharp_eigs", "econ_df1",
                                             "noise_trace", "line_probe"} <= clean.keys()
    for name, want in clean.items():
        for got in (noisy[name], again[name]):
            if isinstance(want, torch.Tensor):
                torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12, equal_nan=True)
            else:
                assert got == pytest.approx(want, rel=1e-9, abs=1e-12, nan_ok=True), name


def test_dropout_of_zero_keeps_the_training_forward(kit):
    """A GPT has Dropout layers even at p = 0, which return their input: its probing forward
    is then its training forward (economy reuses the training loss as f(0)); raising p later
    is seen at the next use."""
    model = kit.tiny_gpt(dropout=0.0).train()
    walk = Walk(model, "economy", loss_fn=sequence_cross_entropy)
    x, _ = kit.sequences(3, 0)
    assert torch.equal(model(x), model.eval()(x))
    assert walk.evaluator.reproduces_training_forward
    model.h[0].attn.attn_dropout.p = 0.1
    assert not walk.evaluator.reproduces_training_forward


def test_sequence_line_sweeps_go_chunk_by_chunk_and_equal_the_written_out_losses(
        kit, monkeypatch):
    """sequence_cross_entropy is not in ROW_WISE (stacking its logits is slower): a line
    sweep applies it per chunk and point, and gets each sequence's loss at each point."""
    import sgdwalk.probes.batch as batch
    from sgdwalk.probes.evaluator import LossEvaluator

    model = kit.tiny_gpt()
    layout = ParamLayout.of(model)
    chunks = [kit.sequences(3, 1), kit.sequences(2, 2), kit.sequences(4, 3)]
    ev = LossEvaluator(model, layout, batches=batch.Pairs(sequence_cross_entropy))
    theta = kit.flat_params(model)
    u = torch.randn(theta.shape, generator=torch.Generator().manual_seed(4), dtype=theta.dtype)
    grid = [-0.25, 0.0, 0.5, 1.0, 4.0]
    calls, original = [], batch.per_example

    def counted(loss_fn, z, y):
        calls.append(len(z))
        return original(loss_fn, z, y)

    monkeypatch.setattr(batch, "per_example", counted)
    got = ev.line(theta, u, grid, chunks)
    assert calls == [3, 2, 4] * len(grid) and got.shape == (len(grid), 9)
    for k, a in enumerate(grid):
        with torch.no_grad():
            expected = torch.cat([sequence_cross_entropy(
                functional_call(model, layout.views(theta + a * u), (x,)), y) for x, y in chunks])
        torch.testing.assert_close(got[k], expected, rtol=1e-12, atol=0)
