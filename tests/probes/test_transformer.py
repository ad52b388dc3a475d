"""The probes on a GPT: Hessian-vector products through attention (whose fused kernel has no
double backward) equal autograd's full Hessian in float64, and dropout is off while probing."""

import pytest
import torch
from torch.func import functional_call

from sgdwalk.config import ModelConfig, WalkConfig
from sgdwalk.functional.flat import ParamLayout
from sgdwalk.models import build_model, math_attention, sequence_cross_entropy
from sgdwalk.models.gpt import CausalSelfAttention
from sgdwalk.probes.curvature import Curvature
from sgdwalk.probes.presets import build_probes
from sgdwalk.probes.sharpness import Sharpness
from sgdwalk.probes.walk import Walk

# torch.func.jvp (economy_jvp) loads torch's own jit-scripted decompositions on first use
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script`:DeprecationWarning")

VOCAB, T = 5, 4


def tiny_gpt(dropout=0.0, seed=0):
    """1 layer, 2 heads, width 4, block 4, vocab 5: 288 float64 parameters."""
    cfg = ModelConfig(name="gpt", n_layer=1, n_head=2, n_embd=4, block_size=T, dropout=dropout)
    torch.manual_seed(seed)
    return build_model(cfg, (T,), VOCAB).double()


def sequences(n, seed):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(0, VOCAB, (n, T), generator=gen),
            torch.randint(0, VOCAB, (n, T), generator=gen))


def exact_hessian(model, chunks):
    """Autograd's full (P, P) Hessian of the mean per-sequence loss over `chunks`, with the
    model on the written-out attention in eval mode: an oracle independent of the walk."""
    layout = ParamLayout.of(model)
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    n = sum(len(y) for _, y in chunks)

    def loss(flat):
        total = 0.0
        for x, y in chunks:
            logits = functional_call(model, layout.views(flat), (x,))
            total = total + sequence_cross_entropy(logits, y).sum()
        return total / n

    was = model.training
    model.eval()
    with math_attention(model):
        H = torch.autograd.functional.hessian(loss, theta)
    model.train(was)
    return H


def one_step(walk, model, x, y, lr=0.05):
    """One SGD step on (x, y) with the walk around it; the step's values."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    loss = sequence_cross_entropy(model(x), y).mean()
    loss.backward()
    walk.before_step(loss.detach(), (x, y))
    opt.step()
    return walk.after_step(opt)


def test_the_walk_uses_fused_attention_outside_hvps():
    """The model stays on its default (fused) path: the probes never flip its flags."""
    model = tiny_gpt()
    assert all(not m.math for m in model.modules() if isinstance(m, CausalSelfAttention))
    with pytest.raises(RuntimeError, match="derivative for .*flash_attention"):
        x, y = sequences(2, 0)
        theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        torch.autograd.functional.hessian(  # what an HVP without the hook would hit
            lambda f: sequence_cross_entropy(
                functional_call(model.eval(), ParamLayout.of(model).views(f), (x,)), y).mean(),
            theta)


def test_sharpness_and_curvature_on_a_gpt_equal_the_full_hessian():
    """Lanczos top-3 against eigvalsh and u^T H u against the full Hessian (288 parameters,
    probe set in 2 chunks): 1e-9 relative; the model's attention flags are untouched."""
    model = tiny_gpt()
    probe_set = [sequences(3, 1), sequences(3, 2)]
    x, y = sequences(4, 3)
    H_probe = exact_hessian(model, probe_set)
    H_batch = exact_hessian(model, [(x, y)])
    sharp = Sharpness(k=3, tol=1e-11, max_iter=120)
    walk = Walk(model, [Curvature(), sharp], loss_fn=sequence_cross_entropy,
                probe_set=probe_set)
    v = one_step(walk, model, x, y)
    top = torch.linalg.eigvalsh(H_probe).flip(0)[:3]
    assert top[0] > 1e-3  # not vacuous
    torch.testing.assert_close(v["sharp_eigs"], top, rtol=1e-9, atol=1e-12)
    u = walk._update
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


def test_dropout_is_off_while_probing_and_training_mode_is_restored():
    """A GPT with dropout 0.5, in train mode, measures what the same GPT with dropout 0 does
    (every probe of the full preset, economy's jvp included), twice alike; its modules are
    in train mode afterwards."""
    probe_set = [sequences(4, 1)]
    x, y = sequences(4, 3)
    values = []
    for dropout in (0.5, 0.5, 0.0):
        model = tiny_gpt(dropout=dropout).train()
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
