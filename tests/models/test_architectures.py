"""Parameter counts, output shapes and width scaling of the study's models."""

import pytest
import torch
import torch.nn as nn

from sgdwalk.config import ModelConfig
from sgdwalk.models import build_model, count_parameters

CIFAR = (3, 32, 32)


def build_on_meta(cfg, shape=CIFAR, classes=10):
    """Counts need no storage: build without allocating (and without drawing random numbers)."""
    with torch.device("meta"):
        return build_model(cfg, shape, classes)


@pytest.mark.parametrize(
    "cfg, shape, expected",
    [
        (ModelConfig(name="vgg11", batchnorm=True), CIFAR, 9_756_426),
        (ModelConfig(name="vgg11", batchnorm=False), CIFAR, 9_750_922),
        (ModelConfig(name="resnet", depth=56), CIFAR, 855_578),
        (ModelConfig(name="resnet", depth=20), CIFAR, 272_282),
        (ModelConfig(name="mlp", widths=(500, 350), batchnorm=True), (1, 28, 28), 573_060),
    ],
    ids=["vgg11_bn", "vgg11", "resnet56", "resnet20", "mlp_mnist"],
)
def test_parameter_counts_match_the_study(cfg, shape, expected):
    assert count_parameters(build_on_meta(cfg, shape)) == expected


def test_count_on_cpu_equals_count_on_meta():
    cfg = ModelConfig(name="resnet", depth=20)
    assert count_parameters(build_model(cfg, CIFAR, 10)) == count_parameters(build_on_meta(cfg))


def test_resnet56_is_option_a_plus_two_projections():
    # 853,018 is the post-activation, option-A (parameter-free shortcut) ResNet-56
    model = build_on_meta(ModelConfig(name="resnet", depth=56))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    projections = [m for m in convs if m.kernel_size == (1, 1)]
    assert [tuple(p.weight.shape) for p in projections] == [(32, 16, 1, 1), (64, 32, 1, 1)]
    assert all(m.bias is None for m in convs)
    assert count_parameters(model) == 853_018 + 16 * 32 + 32 * 64


@pytest.mark.parametrize(
    "cfg, shape",
    [
        (ModelConfig(name="mlp"), (1, 8, 8)),
        (ModelConfig(name="mlp", widths=(7,), batchnorm=False), (5,)),
        (ModelConfig(name="vgg11", width_mult=0.25), CIFAR),
        (ModelConfig(name="resnet", depth=20), CIFAR),
        (ModelConfig(name="resnet", depth=8, width_mult=0.5), (1, 8, 8)),
    ],
    ids=["mlp_digits", "mlp_vector", "vgg11_quarter", "resnet20", "resnet8_digits"],
)
def test_output_shape(cfg, shape):
    torch.manual_seed(0)
    model = build_model(cfg, shape, 10)
    out = model(torch.randn(4, *shape))
    assert out.shape == (4, 10)
    assert torch.isfinite(out).all()


def test_vgg_flattens_a_spatial_grid_left_after_the_pools():
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="vgg11", width_mult=0.25), (3, 64, 48), 7)
    assert model.classifier[0].in_features == 128 * 2 * 1  # 512 * 0.25 channels, 64//32 x 48//32
    assert model(torch.randn(2, 3, 64, 48)).shape == (2, 7)


def conv_widths(model):
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_vgg_width_mult_scales_convs_and_head():
    model = build_on_meta(ModelConfig(name="vgg11", width_mult=0.25))
    assert conv_widths(model) == [16, 32, 64, 64, 128, 128, 128, 128]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(128, 128), (128, 128), (128, 10)]


def test_resnet_width_mult_scales_stages():
    model = build_on_meta(ModelConfig(name="resnet", depth=20, width_mult=0.5))
    widths = conv_widths(model)
    assert widths[0] == 8  # stem
    assert sorted(set(widths)) == [8, 16, 32]
    assert model.classifier.in_features == 32


def test_width_mult_rounds_and_keeps_at_least_one_channel():
    model = build_on_meta(ModelConfig(name="vgg11", width_mult=0.001))
    assert set(conv_widths(model)) == {1}
    assert model.classifier[0].out_features == 1
    model = build_on_meta(ModelConfig(name="resnet", depth=8, width_mult=0.3))
    assert sorted(set(conv_widths(model))) == [5, 10, 19]  # round(4.8), round(9.6), round(19.2)


def test_mlp_layers_follow_widths_and_batchnorm():
    model = build_on_meta(ModelConfig(name="mlp", widths=(64, 128, 64)), (1, 8, 8))
    kinds = [type(m).__name__ for m in model.features]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU"] * 3
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [64, 128, 64, 10]
    plain = build_on_meta(ModelConfig(name="mlp", widths=(64,), batchnorm=False), (1, 8, 8))
    assert not any(isinstance(m, nn.BatchNorm1d) for m in plain.modules())


@pytest.mark.parametrize("name", ["mlp", "vgg11", "resnet"])
def test_no_inplace_activations(name):
    model = build_on_meta(ModelConfig(name=name, width_mult=0.25, depth=8), CIFAR)
    assert not any(getattr(m, "inplace", False) for m in model.modules())
