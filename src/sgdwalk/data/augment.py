"""CIFAR-10's training augmentation, vectorised over the batch."""

from __future__ import annotations

import torch


def augment_cifar(
    x: torch.Tensor,
    generator: torch.Generator,
    padding: int = 4,
    fill: float | tuple[float, ...] = 0.0,
    flip: bool = True,
) -> torch.Tensor:
    """Random crop of the original size from the zero-padded image, then a horizontal flip
    with probability 1/2, each image independently.

    With P = `padding`, image b is padded by P on every side with `fill`, cropped at offset
    (i_b, j_b) drawn uniformly from {0..2P}^2, and mirrored left-right when f_b is true:
        out[b, c, h, w] = pad(x)[b, c, i_b + h, j_b + w'],  w' = W-1-w if f_b else w.
    The draws come from `generator` alone, in this order: i (B,), j (B,), f (B,), each by
    one torch call on the generator's device, so the result is deterministic given the
    generator's state and independent of the device x lives on.

    `fill` is in the units of x: 0.0 on normalised CIFAR-10 is the mean colour. (torchvision's
    RandomCrop pads black *before* normalising, i.e. fill = -mean/std per channel.)

    Args:
        x: batch of images, shape (B, C, H, W), any float dtype and device.
        generator: source of randomness; its state advances.
        padding: P, pixels of padding on each side (study: 4).
        fill: value of the padded pixels: one number, or one per channel.
        flip: draw the horizontal flips (False for digits, which are not mirror-symmetric;
            the draws are then skipped, so the crop offsets alone use the generator).

    Returns:
        A new tensor of shape (B, C, H, W), dtype and device of x.
    """
    if x.ndim != 4:
        raise ValueError(f"augment_cifar: expected x of shape (B, C, H, W), got {tuple(x.shape)}")
    b, c, h, w = x.shape
    i = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=generator.device)
    j = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=generator.device)
    if flip:
        flip = torch.rand(b, generator=generator, device=generator.device) < 0.5
    else:
        flip = torch.zeros(b, dtype=torch.bool, device=generator.device)
    i, j, flip = i.to(x.device), j.to(x.device), flip.to(x.device)
    if isinstance(fill, (int, float)):
        padded = torch.nn.functional.pad(x, (padding, padding, padding, padding), value=fill)
    else:  # per channel: shift so the fill is zero, pad, shift back
        shift = torch.as_tensor(fill, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        padded = torch.nn.functional.pad(x - shift, (padding,) * 4) + shift
    rows = i[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = torch.arange(w, device=x.device).expand(b, w)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + j[:, None]
    batch = torch.arange(b, device=x.device)[:, None, None]
    # channels-last gather: (B, H+2P, W+2P, C)[b, rows, cols] -> (B, H, W, C)
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()
