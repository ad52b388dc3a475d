"""Barriers: how far a loss profile rises above its ends, and rises of a sequence.

A segment profile is the loss sampled along a straight segment from b = 0 to b = 1 with
both ends included, e.g. between the floor points of steps t and t + k (paper claim C6),
or between the iterates theta_t and theta_{t+k} for comparison (C7).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["segment_barrier", "rises"]


def segment_barrier(values: Tensor, b: Tensor | None = None) -> tuple[float, float]:
    """Barrier height of a segment profile and where it lies.

        height = max_{0 < b_i < 1} L(b_i) - max(L(0), L(1)),   position = its argmax b_i.

    Positive: the interior rises above both ends (a barrier). Zero or negative: no barrier
    (negative means the highest interior point stays that far below the higher end).

    Args:
        values: (n,) losses at b_0 = 0 < b_1 < ... < b_{n-1} = 1, n >= 3.
        b: (n,) the positions; None means evenly spaced, linspace(0, 1, n).

    Returns: (height, position) as floats; (nan, nan) if n < 3 or any value is non-finite.
    """
    v = torch.as_tensor(values).detach().to(device="cpu", dtype=torch.float64).reshape(-1)
    n = v.numel()
    if b is None:
        pos = torch.linspace(0.0, 1.0, max(n, 2), dtype=torch.float64)
    else:
        pos = torch.as_tensor(b).detach().to(device="cpu", dtype=torch.float64).reshape(-1)
        if pos.numel() != n:
            raise ValueError(f"segment_barrier: expected {n} positions b, got {pos.numel()}")
    if n < 3 or not bool(torch.isfinite(v).all()):
        return math.nan, math.nan
    i = int(torch.argmax(v[1:-1])) + 1
    return float(v[i]) - max(float(v[0]), float(v[-1])), float(pos[i])


def rises(sequence: Tensor, lag: int = 1) -> Tensor:
    """Positive increments of a sequence: r_t = max(x_{t+lag} - x_t, 0).

    Applied to the floor losses F_t, r_t > eps marks the floor rising: the path of floors
    is non-monotone (claim C6). NaN entries propagate.

    Args:
        sequence: (n,) values x_0..x_{n-1}.
        lag: k >= 1, the distance between compared entries.

    Returns: (max(n - lag, 0),) tensor of the sequence's float dtype (float64 for ints),
    aligned with t.
    """
    x = torch.as_tensor(sequence).detach().reshape(-1)
    if not x.dtype.is_floating_point:
        x = x.to(torch.float64)
    if int(lag) < 1:
        raise ValueError(f"rises: expected lag >= 1, got {lag}")
    d = x[lag:] - x[:-lag] if x.numel() > lag else x[:0]
    return d.clamp_min(0.0)
