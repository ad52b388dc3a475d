"""The model registry: a name maps to a builder `(cfg, input_shape, num_classes) -> nn.Module`.

Adding a model is one file with one `@register_model("name")` builder, plus an import line
in `sgdwalk/models/__init__.py` so the registration runs. A user's model needs neither:
`model.name` may be an import path `package.module:factory` to a function with the same
signature, which any process (CLI, sweep worker, Ray worker) imports from the config's text.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from sgdwalk.config import ModelConfig
from sgdwalk.errors import ConfigError
from sgdwalk.importpath import resolve
from sgdwalk.models.init import init_study

Builder = Callable[[ModelConfig, tuple[int, ...], int], nn.Module]

MODELS: dict[str, Builder] = {}  # registry name -> builder; filled by @register_model
FACTORY = "a function (ModelConfig, input_shape, num_classes) -> torch.nn.Module"


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator that adds a builder to `MODELS` under `name` (names must be unique)."""

    def add(builder: Builder) -> Builder:
        if name in MODELS:
            raise ValueError(f"model {name!r} is already registered")  # a bug, not user input
        MODELS[name] = builder
        return builder

    return add


def model_builder(name: str) -> Builder:
    """The builder `model.name` names: a registered one, or the function at an import path
    (studies check every run's model.name with it before anything trains).

    Raises:
        ConfigError: see `sgdwalk.importpath.resolve`.
    """
    return resolve(name, MODELS, "model.name", FACTORY)


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build the model `cfg.name` for inputs of `input_shape` (one example, no batch axis).

    Parameters are drawn from torch's global RNG: seed it (``torch.manual_seed``) before the
    call for a reproducible model. With ``cfg.init == "study"`` the study initialisation
    (`init_study`: convolutions and BatchNorm only) is applied after construction, to every
    model, an import-path factory's too; ``"torch"`` keeps what the builder made.

    Args:
        cfg: the model section of the run config.
        input_shape: shape of one input, e.g. (3, 32, 32) for CIFAR-10 or (1, 8, 8) for digits.
        num_classes: number of output logits.

    Raises:
        ConfigError: unknown name or import path, a factory that returns something other than
        an nn.Module, or an input shape / class count the model cannot take.
    """
    builder = model_builder(cfg.name)
    input_shape = tuple(input_shape)
    if not input_shape or any(not isinstance(d, int) or d <= 0 for d in input_shape):
        raise ConfigError(f"model input shape: expected positive sizes, got {input_shape}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"model num_classes: expected an integer >= 1, got {num_classes!r}")
    model = builder(cfg, input_shape, num_classes)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model.name: expected {cfg.name} to return a torch.nn.Module, got "
                          f"{type(model).__name__}")
    if cfg.init == "study":
        init_study(model)
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (trainable or not; buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def scale_width(width: int, mult: float) -> int:
    """`width * mult` rounded to the nearest integer (Python's round: halves to even), >= 1."""
    return max(1, round(width * mult))


def image_shape(name: str, input_shape: tuple[int, ...], min_size: int = 1) -> tuple[int, int, int]:
    """Check that `input_shape` is (channels, height, width) with height, width >= `min_size`."""
    if len(input_shape) != 3:
        raise ConfigError(
            f"model {name}: expected an input shape (channels, height, width), got {input_shape}"
        )
    c, h, w = input_shape
    if h < min_size or w < min_size:
        raise ConfigError(
            f"model {name}: expected height and width >= {min_size}, got {h}x{w} "
            f"(input shape {input_shape})"
        )
    return c, h, w
