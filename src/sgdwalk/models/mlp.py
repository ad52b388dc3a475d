"""Fully connected network (the study's MNIST model: 784-500-350-10, BatchNorm, ReLU)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from sgdwalk.config import ModelConfig
from sgdwalk.models.registry import register_model


class MLP(nn.Module):
    """Flatten -> [Linear -> (BatchNorm1d) -> activation] per hidden width -> Linear.

    Args:
        in_features: size of one flattened input.
        widths: hidden layer widths, in order.
        num_classes: number of output logits.
        batchnorm: put a BatchNorm1d between each hidden Linear and its activation.
        activation: "relu", "tanh" or "gelu".
    """

    def __init__(
        self, in_features: int, widths: tuple[int, ...], num_classes: int, batchnorm: bool,
        activation: str = "relu",
    ):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_features
        for width in widths:
            layers.append(nn.Linear(prev, width))
            if batchnorm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(_ACTIVATIONS[activation]())
            prev = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, num_classes) for inputs of shape (batch, *input_shape)."""
        return self.classifier(self.features(x.flatten(1)))


_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


@register_model("mlp")
def build_mlp(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> MLP:
    """MLP on the flattened input; hidden widths `cfg.widths` (width_mult is not applied)."""
    return MLP(math.prod(input_shape), tuple(cfg.widths), num_classes, cfg.batchnorm,
               cfg.activation)
