"""Conv nets are probed with channels_last inputs on CPU ("auto"): the same losses up to
round-off (float64 nets: 1e-12 relative), the contiguous form bit for bit the plain
forward, a model that cannot take channels_last falls back, and nothing is written."""

import copy

import pytest
import torch
import torch.nn as nn

from sgdwalk.errors import ConfigError
from sgdwalk.functional.flat import ParamLayout
from sgdwalk.losses import cross_entropy
from sgdwalk.probes.evaluator import LossEvaluator


class ConvNet(nn.Module):
    def __init__(self, view: bool = False):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6),
                                      nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(6 * 4 * 4, 5)
        self.view = view

    def forward(self, x):
        z = self.features(x)
        # .view of a 4x4 feature map needs contiguous memory: channels_last breaks it
        z = z.view(z.size(0), -1) if self.view else z.flatten(1)
        return self.head(z)


def _setup(view=False, dtype=torch.float64):
    torch.manual_seed(0)
    model = ConvNet(view).to(dtype).train()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(24, 3, 8, 8, generator=gen, dtype=dtype)
    y = torch.randint(0, 5, (24,), generator=gen)
    chunks = list(zip(x.split(8), y.split(8)))
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    u = 0.05 * torch.randn(theta.numel(), generator=gen, dtype=dtype)
    return model, chunks, theta, u


def test_auto_uses_channels_last_for_a_conv_net_and_gives_the_same_curve():
    model, chunks, theta, u = _setup()
    before = copy.deepcopy(model.state_dict())
    fast = LossEvaluator(model, ParamLayout.of(model))
    plain = LossEvaluator(model, ParamLayout.of(model), memory_format="contiguous")
    grid = [-0.25, 0.0, 0.5, 1.0]
    got = fast.line(theta, u, grid, chunks, end=theta + u)
    assert fast.channels_last and not plain.channels_last
    torch.testing.assert_close(got, plain.line(theta, u, grid, chunks, end=theta + u),
                               rtol=1e-12, atol=1e-12)
    # the contiguous form is the plain forward bit for bit (BN on batch statistics)
    twin = copy.deepcopy(model)
    for m in twin.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = False
    with torch.no_grad():
        expected = torch.cat([cross_entropy(twin(x), y) for x, y in chunks])
    assert torch.equal(plain.losses(chunks, theta), expected)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_model_that_cannot_take_channels_last_falls_back():
    model, chunks, theta, u = _setup(view=True)
    with pytest.raises(RuntimeError):  # the premise: this model refuses channels_last
        with torch.no_grad():
            model(chunks[0][0].contiguous(memory_format=torch.channels_last))
    ev = LossEvaluator(model, ParamLayout.of(model))
    plain = LossEvaluator(model, ParamLayout.of(model), memory_format="contiguous")
    got = ev.line(theta, u, [0.0, 1.0], chunks)
    assert not ev.channels_last
    assert torch.equal(got, plain.line(theta, u, [0.0, 1.0], chunks))


def test_float32_conv_net_agrees_to_float32_round_off():
    model, chunks, theta, u = _setup(dtype=torch.float32)
    fast = LossEvaluator(model, ParamLayout.of(model), memory_format="channels_last")
    plain = LossEvaluator(model, ParamLayout.of(model), memory_format="contiguous")
    torch.testing.assert_close(fast.losses(chunks, theta), plain.losses(chunks, theta),
                               rtol=1e-5, atol=1e-6)


def test_unknown_memory_format_is_refused():
    model, *_ = _setup()
    with pytest.raises(ConfigError, match="memory_format"):
        LossEvaluator(model, ParamLayout.of(model), memory_format="nhwc")
