"""init_study: He fan-out normal convs, zero conv bias, BN 1/0, Linear at PyTorch default."""

import math

import pytest
import torch
import torch.nn as nn

from sgdwalk.config import ModelConfig
from sgdwalk.models import build_model, init_study


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(1111)
    return build_model(ModelConfig(name="vgg11", batchnorm=True), (3, 32, 32), 10)


def test_conv_weight_std_is_he_fan_out(vgg):
    # the largest conv: 512 -> 512, 3x3, 2.36M weights; std estimate error ~ 1/sqrt(2N) = 0.05%
    conv = [m for m in vgg.modules() if isinstance(m, nn.Conv2d)][-1]
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    w = conv.weight.detach()
    assert w.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.01)
    assert abs(w.mean().item()) < 0.01 * math.sqrt(2 / fan_out)


def test_conv_bias_zero_and_batchnorm_one_zero(vgg):
    convs = [m for m in vgg.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in vgg.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == 8 and len(bns) == 8
    assert all(torch.count_nonzero(m.bias) == 0 for m in convs)
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in bns)


def test_linear_layers_keep_pytorch_default(vgg):
    # default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
    for m in (m for m in vgg.modules() if isinstance(m, nn.Linear)):
        bound = 1 / math.sqrt(m.in_features)
        assert m.weight.abs().max().item() <= bound
        assert m.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
        assert torch.count_nonzero(m.bias) > 0


def test_torch_init_is_not_study_init():
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="vgg11", init="torch"), (3, 32, 32), 10)
    conv = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]
    assert torch.count_nonzero(conv.bias) > 0
    fan_in = conv.in_channels * 9
    assert conv.weight.std().item() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.02)


def test_init_study_resets_batchnorm_of_any_model():
    model = nn.Sequential(nn.Conv2d(2, 3, 3, bias=True), nn.BatchNorm2d(3), nn.BatchNorm1d(4))
    for p in model.parameters():
        nn.init.constant_(p, 5.0)
    init_study(model)
    assert torch.all(model[0].bias == 0) and not torch.all(model[0].weight == 5.0)
    for bn in model[1:]:
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
