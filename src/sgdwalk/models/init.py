"""The study's initialisation (the original code's, for VGG-11 and ResNet on CIFAR-10)."""

from __future__ import annotations

import torch
import torch.nn as nn


@torch.no_grad()
def init_study(model: nn.Module) -> None:
    """Initialise `model` in place as the study did.

    - Conv weights: He (Kaiming) normal with ``mode="fan_out"`` and the ReLU gain, i.e.
      w ~ N(0, 2 / fan_out) with fan_out = out_channels * kernel_h * kernel_w.
    - Conv biases: zero.
    - BatchNorm weight 1, bias 0 (running statistics untouched).
    - Linear layers are left at PyTorch's default (uniform, Kaiming with a = sqrt(5));
      so an MLP is unchanged apart from its BatchNorm layers, which are already 1/0.

    Draws from torch's global RNG; call it once, right after building the model.
    """
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.modules.batchnorm._NormBase) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
