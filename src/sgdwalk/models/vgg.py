"""VGG-11 for CIFAR-10 (the study's model: 9,756,426 parameters with BN, 9,750,922 without)."""

from __future__ import annotations

import torch
import torch.nn as nn

from sgdwalk.config import ModelConfig
from sgdwalk.models.registry import image_shape, register_model, scale_width

# conv widths, "M" = 2x2 max pool with stride 2
# fmt: off
VGG11_LAYOUT: tuple[int | str, ...] = (
    64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"
)
# fmt: on
HEAD_WIDTH = 512  # the two hidden Linear layers of the head
POOLS = sum(1 for v in VGG11_LAYOUT if v == "M")


class VGG(nn.Module):
    """3x3 convs (padding 1) -> [BN] -> ReLU with max pools, then a 3-layer ReLU head.

    No dropout: the loss along a line must be a deterministic function of the parameters.

    Args:
        in_channels: channels of the input image.
        layout: conv widths and "M" for max pools.
        spatial: (height, width) left after the pools; the head's input is
            last_width * height * width.
        head_width: width of the two hidden Linear layers.
        num_classes: number of output logits.
        batchnorm: BatchNorm2d between each conv and its ReLU.
    """

    def __init__(
        self,
        in_channels: int,
        layout: tuple[int | str, ...],
        spatial: tuple[int, int],
        head_width: int,
        num_classes: int,
        batchnorm: bool,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for v in layout:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            layers.append(nn.Conv2d(prev, v, kernel_size=3, padding=1))
            if batchnorm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=False))
            prev = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(prev * spatial[0] * spatial[1], head_width),
            nn.ReLU(inplace=False),
            nn.Linear(head_width, head_width),
            nn.ReLU(inplace=False),
            nn.Linear(head_width, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (batch, num_classes) for images (batch, channels, height, width)."""
        return self.classifier(self.features(x).flatten(1))


@register_model("vgg11")
def build_vgg11(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> VGG:
    """VGG-11; `cfg.width_mult` scales every conv width and the head's 512s.

    Inputs larger than 32x32 keep their leftover spatial grid (h // 32, w // 32), which
    the head flattens; inputs smaller than 32x32 cannot take the five poolings.
    """
    c, h, w = image_shape("vgg11", input_shape, min_size=2**POOLS)
    layout = tuple(v if v == "M" else scale_width(v, cfg.width_mult) for v in VGG11_LAYOUT)
    spatial = (h // 2**POOLS, w // 2**POOLS)  # each pool floors, so 5 pools floor by 32
    head = scale_width(HEAD_WIDTH, cfg.width_mult)
    return VGG(c, layout, spatial, head, num_classes, cfg.batchnorm)
