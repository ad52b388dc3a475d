"""optim.weight_decay_on: nanoGPT's two parameter groups (tensors of >= 2 dimensions decayed,
biases and LayerNorm not) by their exact AdamW and SGD steps; "all" stays one group; a bad
value is one line."""

from __future__ import annotations

import pytest
import torch

from sgdwalk.config import ModelConfig, OptimConfig, load_config
from sgdwalk.errors import ConfigError
from sgdwalk.models import build_model
from sgdwalk.train.optim import make_optimizer

LR, WD = 0.1, 0.5


def gpt() -> torch.nn.Module:
    """2 blocks, width 8, vocab 7 (tied head), float64."""
    torch.manual_seed(0)
    cfg = ModelConfig(name="gpt", n_layer=2, n_head=2, n_embd=8, block_size=4)
    return build_model(cfg, (4,), 7).double()


@pytest.mark.parametrize("optimizer", ["AdamW", "SGD"])
def test_matrices_decays_2d_tensors_only_by_the_exact_step(optimizer):
    """With zero gradients a step is the decay alone: AdamW p (1 - lr wd), SGD p - lr wd p,
    for the 2-d tensors (embeddings and Linear weights); biases and LayerNorm stay bit for bit."""
    model = gpt()
    named = dict(model.named_parameters())
    opt = make_optimizer(OptimConfig(optimizer=optimizer, lr=LR, weight_decay=WD,
                                     weight_decay_on="matrices"), model.parameters())
    decayed, exempt = ({id(p) for p in g["params"]} for g in opt.param_groups)
    assert [g["weight_decay"] for g in opt.param_groups] == [WD, 0.0]
    assert decayed | exempt == {id(p) for p in named.values()} and not decayed & exempt
    assert {n for n, p in named.items() if id(p) in decayed} == {
        n for n in named if n.endswith("weight") and ".ln_" not in n and "ln_f" not in n}
    assert any("wte" in n for n, p in named.items() if id(p) in decayed)  # embeddings too
    before = {n: p.detach().clone() for n, p in named.items()}
    for p in named.values():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in named.items():
        if id(p) in decayed:
            want = before[n] * (1 - LR * WD) if optimizer == "AdamW" else (
                before[n] - LR * (WD * before[n]))
            torch.testing.assert_close(p.detach(), want, rtol=1e-15, atol=0)
        else:
            assert torch.equal(p.detach(), before[n]), n


def test_all_is_one_group_with_every_parameter():
    model = gpt()
    opt = make_optimizer(OptimConfig(optimizer="AdamW", lr=LR, weight_decay=WD),
                         model.parameters())
    assert len(opt.param_groups) == 1
    assert opt.param_groups[0]["weight_decay"] == WD
    assert len(opt.param_groups[0]["params"]) == len(list(model.parameters()))


def test_matrices_leaves_out_an_empty_group():
    opt = make_optimizer(OptimConfig(optimizer="AdamW", lr=LR, weight_decay=WD,
                                     weight_decay_on="matrices"),
                         torch.nn.Linear(3, 2, bias=False).parameters())
    assert [g["weight_decay"] for g in opt.param_groups] == [WD]


def test_a_bad_value_is_one_line_and_the_gpt_preset_decays_matrices():
    with pytest.raises(ConfigError, match="^optim.weight_decay_on: expected one of all, "
                                          "matrices, got 'biases'$"):
        OptimConfig(weight_decay_on="biases")
    assert load_config("gpt-char").optim.weight_decay_on == "matrices"
    assert load_config("default").optim.weight_decay_on == "all"
