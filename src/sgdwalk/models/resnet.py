"""Pre-activation ResNet for CIFAR (He et al. 2016, "Identity Mappings in Deep Residual
Networks"), depth 6n+2. ResNet-56 has 855,578 parameters, ResNet-20 272,282.

The variant (it is the one that gives the study's 855,578 exactly):
- stem: one 3x3 conv, 16 channels, no bias, nothing after it (the first block's
  pre-activation normalises it);
- 3 stages of n blocks, widths 16/32/64; every block is
  BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv3x3, added to the shortcut;
- stages 2 and 3 start with stride 2 and a 1x1 conv projection shortcut (no bias, no BN)
  that reads the block's pre-activated input (as in common pre-act code); other shortcuts
  are the identity;
- final BN -> ReLU, global average pool, Linear to the classes. Convs have no bias.

Count for depth 56: stem 432 + blocks 854,368 (of which 16*32 + 32*64 = 2,560 are the
projections) + final BN 128 + Linear 650 = 855,578, i.e. option A's 853,018 (post-activation,
zero-padded identity shortcuts) + 2,560.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from sgdwalk.config import ModelConfig
from sgdwalk.models.registry import image_shape, register_model, scale_width

STAGE_WIDTHS = (16, 32, 64)  # before width_mult; the stem has STAGE_WIDTHS[0] channels


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class PreActBlock(nn.Module):
    """out = conv(relu(bn(conv(relu(bn(x)))))) + shortcut, shortcut = x or a 1x1 projection
    of relu(bn(x)) when the stride or width changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip  # not +=: keep autograd and torch.func free of in-place ops


class PreActResNet(nn.Module):
    """Stem conv, three stages of `blocks_per_stage` pre-activation blocks, BN-ReLU, pool, Linear.

    Args:
        in_channels: channels of the input image.
        blocks_per_stage: n in depth = 6n + 2.
        widths: channels of the three stages (the stem uses the first).
        num_classes: number of output logits.
    """

    def __init__(
        self, in_channels: int, blocks_per_stage: int, widths: tuple[int, ...], num_classes: int
    ):
        super().__init__()
        self.stem = conv3x3(in_channels, widths[0])
        blocks: list[nn.Module] = []
        prev = widths[0]
        for stage, width in enumerate(widths):
            for i in range(blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(PreActBlock(prev, width, stride))
                prev = width
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(prev)
        self.classifier = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (batch, num_classes) for images (batch, channels, height, width)."""
        out = F.relu(self.bn(self.blocks(self.stem(x))))
        return self.classifier(out.mean(dim=(2, 3)))


@register_model("resnet")
def build_resnet(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> PreActResNet:
    """Pre-activation ResNet of depth `cfg.depth` (6n+2); `cfg.width_mult` scales 16/32/64.

    Any image size works (global average pooling); `cfg.batchnorm` is not used: the
    pre-activation design needs its BatchNorm layers.
    """
    c, _, _ = image_shape("resnet", input_shape)
    widths = tuple(scale_width(w, cfg.width_mult) for w in STAGE_WIDTHS)
    return PreActResNet(c, (cfg.depth - 2) // 6, widths, num_classes)
