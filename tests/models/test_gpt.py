"""The GPT: its size, init and causality, fused and math attention agreeing, an exact
Hessian-vector product through the math path, and its config checks."""

import contextlib
import math

import pytest
import torch
from torch.func import functional_call, grad, jvp

from sgdwalk.config import ModelConfig, load_config
from sgdwalk.errors import ConfigError
from sgdwalk.losses import sequence_cross_entropy
from sgdwalk.models import GPT, build_model, count_parameters, math_attention
from sgdwalk.models.gpt import CausalSelfAttention

# torch.func.jvp loads torch's own jit-scripted decompositions on first use
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script`:DeprecationWarning")


def gpt(seed=0, vocab=7, t=8, **sizes):
    cfg = ModelConfig(name="gpt", **{"n_layer": 2, "n_head": 2, "n_embd": 8,
                                     "block_size": 8, **sizes})
    torch.manual_seed(seed)
    return build_model(cfg, (t,), vocab)


def closed_form_count(layers, width, vocab, block):
    """Per block 12 C^2 + 13 C (LayerNorms 4C, qkv 3C^2+3C, proj C^2+C, MLP 8C^2+5C), plus
    the token and position embeddings and the final LayerNorm; the head is the embedding."""
    return layers * (12 * width**2 + 13 * width) + vocab * width + block * width + 2 * width


def test_parameter_count_of_the_cpu_candidate_and_the_tied_head():
    model = gpt(vocab=113, t=64, n_layer=4, n_head=4, n_embd=128, block_size=64)
    assert count_parameters(model) == closed_form_count(4, 128, 113, 64) == 816_000
    assert not any("head" in name for name, _ in model.named_parameters())
    # the head is the embedding: logits are ln_f(h) E^T, so moving the embedding row of a
    # token absent from the input moves that token's logit and no other
    ids = torch.randint(0, 100, (2, 64))
    before = model(ids)
    with torch.no_grad():
        model.wte.weight[110] += torch.randn(128)
    changed = (model(ids) - before).abs().amax(dim=(0, 1))
    assert changed[110] > 0.1 and torch.count_nonzero(changed) == 1


def test_init_follows_nanogpt():
    model = gpt(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab=113, t=64)
    block = model.h[1]
    # 49,152 and 16,384 draws: the sample std is within 2% of the target
    assert block.attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert block.mlp.c_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(8), rel=0.02)
    assert block.attn.c_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(8), rel=0.02)
    assert model.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.count_nonzero(block.attn.c_attn.bias) == 0
    assert torch.equal(block.ln_1.weight, torch.ones(128)) and not block.ln_1.bias.any()
    torch.manual_seed(0)
    torch_defaults = build_model(ModelConfig(name="gpt", init="torch"), (64,), 113)
    assert torch_defaults.wte.weight.std().item() == pytest.approx(1.0, rel=0.05)  # N(0, 1)


def test_same_seed_same_parameters():
    a, b, c = gpt(seed=3), gpt(seed=3), gpt(seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.wte.weight, c.wte.weight)


@pytest.mark.parametrize("use_math", [False, True])
def test_attention_is_causal(use_math):
    model = gpt().eval()
    ids = torch.randint(0, 7, (3, 8), generator=torch.Generator().manual_seed(0))
    later = ids.clone()
    later[:, 5] = (later[:, 5] + 1) % 7
    with math_attention(model) if use_math else contextlib.nullcontext():
        a, b = model(ids), model(later)
    assert torch.equal(a[:, :5], b[:, :5])  # positions before 5 never see token 5
    assert (a[:, 5:] - b[:, 5:]).abs().amax() > 1e-4


def test_fused_and_math_attention_agree_to_float32_round_off():
    model = gpt(n_layer=3, n_head=4, n_embd=32, block_size=16, vocab=11, t=16)
    ids = torch.randint(0, 11, (4, 16), generator=torch.Generator().manual_seed(1))
    targets = torch.randint(0, 11, (4, 16), generator=torch.Generator().manual_seed(2))

    def run():
        model.zero_grad()
        logits = model(ids)
        sequence_cross_entropy(logits, targets).mean().backward()
        return logits.detach(), torch.cat([p.grad.reshape(-1) for p in model.parameters()])

    fused_logits, fused_grad = run()
    with math_attention(model):
        math_logits, math_grad = run()
    # float32 round-off: within 16 ulps (eps = 1.19e-7) of the largest value of each
    # (measured: 1.2e-7 on logits up to 0.56, 3e-8 on gradients up to 0.2)
    ulps = 16 * torch.finfo(torch.float32).eps
    assert fused_grad.abs().max() > 1e-3  # not vacuous
    torch.testing.assert_close(math_logits, fused_logits, rtol=0,
                               atol=ulps * fused_logits.abs().max().item())
    torch.testing.assert_close(math_grad, fused_grad, rtol=0,
                               atol=ulps * fused_grad.abs().max().item())


def test_math_attention_switches_every_layer_and_restores_them():
    model = gpt(n_layer=3)
    layers = [m for m in model.modules() if isinstance(m, CausalSelfAttention)]
    layers[1].math = True  # a layer already on the math path stays on it afterwards
    with pytest.raises(RuntimeError, match="inside"):
        with math_attention(model) as same:
            assert same is model and all(m.math for m in layers)
            raise RuntimeError("inside")
    assert [m.math for m in layers] == [False, True, False]


def tiny_problem():
    """A float64 GPT of 288 parameters, a batch of 3 sequences of 4 tokens, and the mean
    per-sequence loss as a function of the flat parameter vector."""
    model = gpt(seed=5, vocab=5, t=4, n_layer=1, n_head=2, n_embd=4, block_size=4).double()
    # init std 0.02 leaves the loss almost flat; larger weights give a Hessian worth testing
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn(p.shape, dtype=p.dtype))
    gen = torch.Generator().manual_seed(6)
    ids, targets = torch.randint(0, 5, (3, 4), generator=gen), torch.randint(0, 5, (3, 4),
                                                                               generator=gen)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(flat):
        chunks = flat.split([math.prod(s) for s in shapes])
        params = {n: c.view(s) for n, c, s in zip(names, chunks, shapes)}
        return sequence_cross_entropy(functional_call(model, params, (ids,)), targets).mean()

    return model, theta, loss


def test_hessian_vector_product_through_math_attention_equals_the_full_hessian():
    model, theta, loss = tiny_problem()
    assert theta.numel() == closed_form_count(1, 4, 5, 4) == 288
    v = torch.randn(theta.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    with math_attention(model):
        hessian = torch.autograd.functional.hessian(loss, theta)
        leaf = theta.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(leaf), leaf, create_graph=True)
        (hv,) = torch.autograd.grad(g @ v, leaf)  # double backward
        _, hv_forward = jvp(grad(loss), (theta,), (v,))  # forward over reverse
    exact = hessian @ v
    torch.testing.assert_close(hessian, hessian.T, rtol=0, atol=1e-12)
    assert exact.norm() > 0.1  # not vacuous
    assert (hv - exact).abs().max() < 1e-10
    assert (hv_forward - exact).abs().max() < 1e-10


def test_dropout_acts_in_train_mode_only():
    model = gpt(dropout=0.3)
    ids = torch.randint(0, 7, (2, 8))
    model.eval()
    plain = gpt(dropout=0.0).eval()  # same seed, same parameters
    assert torch.equal(model(ids), plain(ids))
    model.train()
    torch.manual_seed(0)
    assert not torch.allclose(model(ids), plain(ids))
    want = plain(ids)  # eval mode
    plain.train()
    assert torch.equal(plain(ids), want)  # p = 0: no noise at all
    with math_attention(plain):
        torch.testing.assert_close(plain(ids), want, rtol=0, atol=1e-6)


def test_longer_sequences_than_the_block_are_refused():
    with pytest.raises(ConfigError, match="model.block_size: expected >= the data's sequence "
                                          "length 9, got 8"):
        gpt(t=9)
    with pytest.raises(ConfigError, match=r"model gpt: expected an input shape \(sequence "
                                          r"length,\), got \(1, 8, 8\)"):
        build_model(ModelConfig(name="gpt"), (1, 8, 8), 10)
    with pytest.raises(ValueError, match="expected sequences of length <= 8, got 9"):
        GPT(5, 8, 1, 1, 4)(torch.zeros(1, 9, dtype=torch.int64))


@pytest.mark.parametrize("override, message", [
    ("model.n_embd=130", "model.n_embd: expected a multiple of model.n_head (4), got 130"),
    ("model.n_head=0", "model.n_head: expected an integer in [1, 1024], got 0"),
    ("model.n_layer=2000", "model.n_layer: expected at most 1,024 (transformer blocks in "
                           "memory), got 2000"),
    ("model.n_embd=100000", "model.n_embd: expected at most 65,536 (width of the residual "
                            "stream; weights grow with the square), got 100000"),
    ("model.block_size=0", "model.block_size: expected an integer in [1, 1048576], got 0"),
    ("model.dropout=1", "model.dropout: expected a number in [0, 1), got 1.0"),
    ("model.dropout=-0.1", "model.dropout: expected a number in [0, 1), got -0.1"),
    ("model.dropout=nan", "model.dropout: expected a number in [0, 1), got nan"),
])
def test_bad_sizes_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, ["model.name=gpt", override])
    assert str(info.value) == message
