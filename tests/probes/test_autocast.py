"""walk.probe_autocast = "bf16": the no-grad sweeps' forwards in bfloat16, derivatives and
the trained model untouched, a wrong value refused in one line."""

import pytest
import torch
import torch.nn as nn

from sgdwalk.config import WalkConfig
from sgdwalk.errors import ConfigError
from sgdwalk.probes.presets import build_probes
from sgdwalk.probes.walk import Walk

BF16_EPS = 2.0**-8  # bfloat16's unit round-off (8 significant bits)


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 5))


def values(autocast, steps=3):
    model = mlp()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 20, generator=gen), torch.randint(0, 5, (64,), generator=gen)
    cfg = WalkConfig(preset="curvature", sharpness="off", probe_autocast=autocast,
                     line_sources=("probe", "batch"))
    walk = Walk(model, cfg, probe_set=(x, y))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        walk.before_step(loss.detach(), (x, y))
        opt.step()
        out = walk.after_step(opt)
    return walk, model, out


def test_bf16_changes_the_forwards_by_bf16_round_off_and_nothing_else():
    fp32_walk, fp32_model, fp32 = values("off")
    bf16_walk, bf16_model, bf16 = values("bf16")
    assert fp32_walk.evaluator.reproduces_training_forward  # fp32: reuses the step's f(0)
    assert not bf16_walk.evaluator.reproduces_training_forward  # bf16: f(0) by its forward
    # the trajectory is the same: the walk never changes it
    assert all(torch.equal(p, q) for p, q in zip(fp32_model.parameters(),
                                                 bf16_model.parameters()))
    # derivatives stay in float32: the Hessian-vector product is bit for bit the same
    assert bf16["curv_uhu"] == fp32["curv_uhu"]
    # the sampled line differs, by bfloat16 round-off of losses near 1.5
    diff = (bf16["line_probe"] - fp32["line_probe"]).abs().max().item()
    assert 0 < diff < 4 * BF16_EPS * fp32["line_probe"].abs().max().item()
    assert bf16["econ_f1"] != fp32["econ_f1"]
    assert bf16["line_probe"].dtype == fp32["line_probe"].dtype


def test_a_wrong_value_is_refused_in_one_line():
    with pytest.raises(ConfigError,
                       match=r"^walk.probe_autocast: expected one of off, bf16, got 'fp16'$"):
        WalkConfig(probe_autocast="fp16")
    with pytest.raises(ConfigError,
                       match=r"^walk.probe_autocast: expected one of off, bf16, got 'half'$"):
        Walk(mlp(), build_probes("cheap"), probe_autocast="half")
