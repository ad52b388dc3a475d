"""build_model: the registry, validation at the boundary, seeding and functional_call."""

import pytest
import torch
import torch.nn as nn
from torch.func import functional_call

from sgdwalk.config import ModelConfig
from sgdwalk.errors import ConfigError
from sgdwalk.models import MODELS, build_model, register_model


def test_unknown_name_lists_the_registry():
    with pytest.raises(ConfigError) as info:
        build_model(ModelConfig(name="x"), (3, 32, 32), 10)
    assert str(info.value) == ("model.name: expected one of gpt, mlp, resnet, vgg11 or an "
                               "import path module:factory, got 'x'")


@pytest.mark.parametrize(
    "name, shape, fragment",
    [
        ("vgg11", (1, 8, 8), "expected height and width >= 32, got 8x8"),
        ("vgg11", (3, 31, 32), "expected height and width >= 32, got 31x32"),
        ("vgg11", (784,), "expected an input shape (channels, height, width), got (784,)"),
        ("resnet", (784,), "expected an input shape (channels, height, width), got (784,)"),
        ("mlp", (1, 0, 8), "expected positive sizes, got (1, 0, 8)"),
        ("mlp", (), "expected positive sizes, got ()"),
    ],
)
def test_bad_input_shape_is_a_config_error(name, shape, fragment):
    with pytest.raises(ConfigError, match="expected") as info:
        build_model(ModelConfig(name=name), shape, 10)
    assert fragment in str(info.value)


def test_bad_class_count_is_a_config_error():
    with pytest.raises(ConfigError, match="num_classes: expected an integer >= 1, got 0"):
        build_model(ModelConfig(name="mlp"), (4,), 0)


def test_register_model_adds_a_builder_and_refuses_duplicates():
    @register_model("tiny_test_model")
    def build_tiny(cfg, input_shape, num_classes):
        return nn.Linear(input_shape[0], num_classes)

    try:
        model = build_model(ModelConfig(name="tiny_test_model"), (3,), 2)
        assert isinstance(model, nn.Linear) and model.out_features == 2
        with pytest.raises(ValueError, match="already registered"):
            register_model("tiny_test_model")(build_tiny)
    finally:
        MODELS.pop("tiny_test_model")


@pytest.mark.parametrize("name", ["mlp", "vgg11", "resnet"])
def test_same_seed_same_parameters(name):
    cfg = ModelConfig(name=name, width_mult=0.125, depth=8)

    def state(seed):
        torch.manual_seed(seed)
        return build_model(cfg, (3, 32, 32), 10).state_dict()

    first, again, other = state(1111), state(1111), state(1112)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    weights = [k for k in first if k.endswith("weight") and first[k].dim() > 1]
    assert all(not torch.equal(first[k], other[k]) for k in weights)


@pytest.mark.parametrize("name", ["mlp", "vgg11", "resnet"])
def test_functional_call_leaves_the_module_untouched(name):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, width_mult=0.125, depth=8), (3, 32, 32), 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    moved = {k: p.detach() + 0.01 for k, p in model.named_parameters()}
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    x = torch.randn(4, 3, 32, 32)
    out_moved = functional_call(model, (moved, buffers), (x,))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not torch.allclose(out_moved, model(x))
