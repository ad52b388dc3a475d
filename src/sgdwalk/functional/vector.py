"""Cosines, norms and dot products of flat parameter-sized vectors, globally and per layer.

Per-layer values use `bounds`: a sequence of (start, stop) offsets into the flat vector
(or an (S, 2) integer tensor), one per segment, half-open like Python slices. Segments
must not overlap; they may come in any order and need not cover the vector. Segment sums
run as one `torch.segment_reduce` over the covered range, not a Python loop per segment.

All reductions accumulate in float64 (inputs of any float dtype are promoted), so a
10M-entry float32 vector still gives cosines good to ~1e-12.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["cosine", "segment_norms", "segment_dots", "segment_cosines"]

Bounds = Sequence[tuple[int, int]] | Tensor


def _flat64(x: Tensor, where: str) -> Tensor:
    if x.dim() != 1:
        raise ValueError(f"{where}: expected a 1-D tensor, got shape {tuple(x.shape)}")
    return x.detach().to(torch.float64)


def _pair(a: Tensor, b: Tensor, where: str) -> tuple[Tensor, Tensor]:
    a, b = _flat64(a, where), _flat64(b, where)
    if a.shape != b.shape:
        raise ValueError(
            f"{where}: expected vectors of the same length, got {a.numel()} and {b.numel()}"
        )
    return a, b


def cosine(a: Tensor, b: Tensor) -> float:
    """cos(a, b) = <a, b> / (||a|| ||b||), clamped to [-1, 1]; NaN if either norm is 0.

    Args: a, b: (P,) vectors. Returns: a float (NaN also if an input is non-finite).
    """
    a, b = _pair(a, b, "cosine")
    na, nb = float(torch.linalg.vector_norm(a)), float(torch.linalg.vector_norm(b))
    if na == 0.0 or nb == 0.0:
        return float("nan")
    c = float(a @ b) / (na * nb)
    return min(max(c, -1.0), 1.0) if c == c else c


def _segment_sum(x: Tensor, bounds: Bounds, where: str) -> Tensor:
    """sum(x[start:stop]) for every (start, stop), as an (S,) float64 tensor."""
    bd = torch.as_tensor(bounds, dtype=torch.long).reshape(-1, 2).cpu()
    n = x.numel()
    if bd.numel() == 0:
        return torch.zeros(0, dtype=torch.float64, device=x.device)
    start, stop = bd[:, 0], bd[:, 1]
    if bool((start < 0).any() or (stop < start).any() or (stop > n).any()):
        raise ValueError(f"{where}: expected 0 <= start <= stop <= {n} for every segment")
    order = torch.argsort(start, stable=True)
    s, e = start[order], stop[order]
    if bool((s[1:] < e[:-1]).any()):
        raise ValueError(f"{where}: expected non-overlapping segments")
    # Interleave each segment with the gap before the next; reduce all, keep the segments.
    gaps = torch.cat([s[1:] - e[:-1], torch.zeros(1, dtype=torch.long)])
    lengths = torch.stack([e - s, gaps], dim=1).reshape(-1)
    sums = torch.segment_reduce(
        x[int(s[0]) : int(e[-1])], "sum", lengths=lengths.to(x.device), unsafe=True
    )[0::2]
    out = torch.empty_like(sums)
    out[order.to(x.device)] = sums
    return out


def segment_norms(x: Tensor, bounds: Bounds) -> Tensor:
    """Per-segment Euclidean norms ||x[start:stop]||.

    Args: x: (P,) vector; bounds: S pairs (start, stop). Returns: (S,) float64 (0 if empty).
    """
    x = _flat64(x, "segment_norms")
    return _segment_sum(x * x, bounds, "segment_norms").sqrt()


def segment_dots(a: Tensor, b: Tensor, bounds: Bounds) -> Tensor:
    """Per-segment dot products <a[start:stop], b[start:stop]>.

    Args: a, b: (P,) vectors; bounds: S pairs (start, stop). Returns: (S,) float64.
    """
    a, b = _pair(a, b, "segment_dots")
    return _segment_sum(a * b, bounds, "segment_dots")


def segment_cosines(a: Tensor, b: Tensor, bounds: Bounds) -> Tensor:
    """Per-segment cosines <a_s, b_s> / (||a_s|| ||b_s||); NaN where either norm is 0.

    Args: a, b: (P,) vectors; bounds: S pairs (start, stop). Returns: (S,) float64 in [-1, 1].
    """
    a, b = _pair(a, b, "segment_cosines")
    dot = _segment_sum(a * b, bounds, "segment_cosines")
    den = (_segment_sum(a * a, bounds, "") * _segment_sum(b * b, bounds, "")).sqrt()
    cos = (dot / den).clamp(-1.0, 1.0)
    return torch.where(den > 0, cos, torch.full_like(cos, float("nan")))
