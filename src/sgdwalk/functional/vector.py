"""Cosines, norms and dot products of flat parameter-sized vectors, globally and per layer.

Per-layer values use `bounds`: a sequence of (start, stop) offsets into the flat vector
(or an (S, 2) integer tensor), one per segment, half-open like Python slices. Segments
must not overlap; they may come in any order and need not cover the vector. Segment sums
run as one `torch.segment_reduce` over the covered range, not a Python loop per segment.

All reductions accumulate in float64 (inputs of any float dtype are promoted), so a
10M-entry float32 vector still gives cosines good to ~1e-12.

`segment_grams` gives every pairwise dot product of several vectors on every segment at
once, by one float64 matrix product per segment: a dozen norms and cosines per layer for the
price of a few kernel calls (the trajectory probe's per-step work).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["cosine", "dot64", "segment_norms", "segment_dots", "segment_cosines",
           "segment_grams"]

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


def dot64(a: Tensor, b: Tensor, block: int = 2**20) -> float:
    """<a, b> accumulated in float64, converting at most `block` entries at a time.

    For vectors of at most `block` entries this is float(torch.dot(a.double(), b.double()))
    bit for bit; longer ones are summed block by block in float64, which spares two float64
    copies of the whole vectors (for a 10M-parameter model, 160 MB allocated and
    page-faulted at every call, which cost more than the dot product itself).

    Args: a, b: (P,) vectors. Returns: a float.
    """
    a, b = a.detach(), b.detach()
    _pair_shapes(a, b, "dot64")
    if a.numel() <= block:
        return float(torch.dot(a.double(), b.double()))
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for i in range(0, a.numel(), block):
        total += torch.dot(a[i : i + block].double(), b[i : i + block].double())
    return float(total)


def _pair_shapes(a: Tensor, b: Tensor, where: str) -> None:
    if a.dim() != 1 or a.shape != b.shape:
        raise ValueError(
            f"{where}: expected two 1-D tensors of the same length, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


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


def segment_grams(vectors: Sequence[Tensor], bounds: Bounds, block: int = 2**16) -> Tensor:
    """Per-segment Gram matrices G[s, i, j] = <v_i[start_s:stop_s], v_j[start_s:stop_s]>.

    The r vectors are copied `block` entries at a time into one float64 buffer (r, block)
    (float32 entries convert exactly, so every product term is exact), and the columns of
    each segment in that block add their r x r Gram matrix to the segment's (one float64
    matrix product; a block of 2^16 entries keeps the buffer in cache and allocates nothing
    of the vectors' size). Accumulation is float64 throughout.

    Args:
        vectors: r >= 1 vectors (P,) of one device, any float dtypes.
        bounds: S pairs (start, stop), non-overlapping, in any order.
        block: entries per vector converted at a time.

    Returns: (S, r, r) float64 on the vectors' device, symmetric; zeros for an empty segment.
    """
    if not vectors:
        raise ValueError("segment_grams: expected at least one vector, got none")
    xs = [_flat64_view(v, "segment_grams") for v in vectors]
    n = xs[0].numel()
    if any(x.numel() != n for x in xs):
        raise ValueError(f"segment_grams: expected vectors of one length, got "
                         f"{sorted({x.numel() for x in xs})}")
    bd = torch.as_tensor(bounds, dtype=torch.long).reshape(-1, 2).tolist()
    if any(not 0 <= a <= b <= n for a, b in bd):
        raise ValueError(f"segment_grams: expected 0 <= start <= stop <= {n} for every segment")
    order = sorted((a, b, s) for s, (a, b) in enumerate(bd) if b > a)
    if any(b > a2 for (_, b, _), (a2, _, _) in zip(order, order[1:])):
        raise ValueError("segment_grams: expected non-overlapping segments")
    r, device = len(xs), xs[0].device
    out = torch.zeros(len(bd), r, r, dtype=torch.float64, device=device)
    if not order:
        return out
    lo, hi = order[0][0], order[-1][1]
    buf = torch.empty(r, min(block, hi - lo), dtype=torch.float64, device=device)
    k = 0  # first segment that may overlap the current block
    for c0 in range(lo, hi, block):
        c1 = min(c0 + block, hi)
        for i, x in enumerate(xs):
            buf[i, : c1 - c0].copy_(x[c0:c1])
        while k < len(order) and order[k][1] <= c0:
            k += 1
        j = k
        while j < len(order) and order[j][0] < c1:
            a, b, seg = order[j]
            a, b = max(a, c0) - c0, min(b, c1) - c0
            if b > a:
                cols = buf[:, a:b]
                out[seg].addmm_(cols, cols.T)
            j += 1
    return out


def _flat64_view(x: Tensor, where: str) -> Tensor:
    if x.dim() != 1 or not x.dtype.is_floating_point:
        raise ValueError(f"{where}: expected 1-D float tensors, got {x.dtype} {tuple(x.shape)}")
    return x.detach()
