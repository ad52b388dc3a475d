"""Cosines, norms and dot products of flat parameter-sized vectors, globally and per layer.

Per-layer values use `bounds`: a sequence of (start, stop) offsets into the flat vector
(or an (S, 2) integer tensor), one per segment, half-open like Python slices. Segments
must not overlap; they may come in any order and need not cover the vector.

Every product term is exact and every sum is float64: float32 entries convert to float64
exactly and the product of two of them fits in float64's 53 bits, so only the sums round: a
dot product is good to about 1e-16 sqrt(n) of sum_i |a_i b_i| whatever the scales, a cosine
to ~1e-13 absolute for a million entries, nearly orthogonal pairs included. (Float32
products would leave ~6e-8 absolute in a cosine: relative errors of 1e-4 for cosines of
1e-3.)

`segment_pair_dots` is the kernel: the per-segment dot products of several pairs of
vectors in one call, for the trajectory probe's dozen norms and cosines per layer a step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["cosine", "dot64", "segment_norms", "segment_dots", "segment_cosines",
           "segment_pair_dots"]

Bounds = Sequence[tuple[int, int]] | Tensor
METHODS = ("auto", "dots", "products")
SMALL = 2**16  # "auto": vectors up to this length take the few-calls path ("products")


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


def dot64(a: Tensor, b: Tensor, block: int = 2**16) -> float:
    """<a, b> accumulated in float64, converting at most `block` entries at a time.

    For vectors of at most `block` entries this is float(torch.dot(a.double(), b.double()))
    bit for bit; longer ones are summed block by block in float64, which spares two float64
    copies of the whole vectors: the blocks' copies (2 x 512 kB) stay in the cache, where
    whole copies go to memory and back (9.2 MB for a 573k-parameter model: 0.97 against
    0.67 ms a call on one loaded core; for 10M parameters 160 MB, page-faulted each call).

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


def segment_norms(x: Tensor, bounds: Bounds) -> Tensor:
    """Per-segment Euclidean norms ||x[start:stop]||.

    Args: x: (P,) vector; bounds: S pairs (start, stop). Returns: (S,) float64 (0 if empty).
    """
    return segment_pair_dots([(x, x)], bounds, where="segment_norms")[:, 0].sqrt()


def segment_dots(a: Tensor, b: Tensor, bounds: Bounds) -> Tensor:
    """Per-segment dot products <a[start:stop], b[start:stop]>.

    Args: a, b: (P,) vectors; bounds: S pairs (start, stop). Returns: (S,) float64.
    """
    return segment_pair_dots([(a, b)], bounds, where="segment_dots")[:, 0]


def segment_cosines(a: Tensor, b: Tensor, bounds: Bounds) -> Tensor:
    """Per-segment cosines <a_s, b_s> / (||a_s|| ||b_s||); NaN where either norm is 0.

    Args: a, b: (P,) vectors; bounds: S pairs (start, stop). Returns: (S,) float64 in [-1, 1].
    """
    d = segment_pair_dots([(a, b), (a, a), (b, b)], bounds, where="segment_cosines")
    den = (d[:, 1] * d[:, 2]).sqrt()
    cos = (d[:, 0] / den).clamp(-1.0, 1.0)
    return torch.where(den > 0, cos, torch.full_like(cos, float("nan")))


def segment_pair_dots(pairs: Sequence[tuple[Tensor, Tensor]], bounds: Bounds,
                      method: str = "auto", where: str = "segment_pair_dots") -> Tensor:
    """Per-segment dot products of k pairs of vectors, D[s, j] = <a_j[seg s], b_j[seg s]>.

        D[s, j] = sum_{start_s <= i < stop_s} a_j[i] b_j[i], products exact, sums in float64

    Each distinct vector that is not float64 is converted once per call (a caller that
    keeps its vectors in float64 pays no conversion). Two ways to the same numbers:

    - "dots": one float64 dot product per segment and pair; reads each pair once, the
      least memory traffic: best once the vectors outgrow the cache (~0.1 ms a pair for
      a 573k-parameter model on one CPU core).
    - "products": the k products over the covered range, then one sum per segment for all
      pairs at once; k + S kernel calls whatever the sizes: best for small models, where
      Python's cost per call is the cost, and on GPUs, where launches are.
    - "auto": "products" for vectors of at most 2^16 entries or not on the CPU, else "dots".

    Args:
        pairs: k >= 1 pairs (a, b) of 1-D float tensors of one length and device.
        bounds: S pairs (start, stop), non-overlapping, in any order.
        method: "auto" | "dots" | "products".
        where: the name that error messages start with.

    Returns: (S, k) float64 on the vectors' device; 0 for an empty segment.
    """
    if method not in METHODS:
        raise ValueError(f"{where}: expected method in {METHODS}, got {method!r}")
    if not pairs:
        raise ValueError(f"{where}: expected at least one pair of vectors, got none")
    vectors = _as64({id(v): v for pair in pairs for v in pair}, where)
    first = next(iter(vectors.values()))
    n, device = first.numel(), first.device
    segs, count = _segments(bounds, n, where)
    if not segs:
        return torch.zeros(count, len(pairs), dtype=torch.float64, device=device)
    ab = [(vectors[id(a)], vectors[id(b)]) for a, b in pairs]
    if method == "products" or (method == "auto" and (n <= SMALL or device.type != "cpu")):
        rows = _by_products(ab, segs)
    else:
        dots = [torch.dot(a[lo:hi], b[lo:hi]) for _, lo, hi in segs for a, b in ab]
        rows = torch.stack(dots).view(len(segs), len(ab))
    order = [s for s, _, _ in segs]
    if order == list(range(count)):  # every segment non-empty and in order (layers)
        return rows
    out = torch.zeros(count, len(pairs), dtype=torch.float64, device=device)
    out[torch.tensor(order, device=device)] = rows
    return out


def _by_products(ab: list[tuple[Tensor, Tensor]], segs: list) -> Tensor:
    """(non-empty segments, k) row sums of the products a_j * b_j: k products, S sums."""
    lo, hi = segs[0][1], max(stop for _, _, stop in segs)
    z = torch.empty(len(ab), hi - lo, dtype=torch.float64, device=ab[0][0].device)
    whole = (lo, hi) == (0, ab[0][0].numel())
    for zj, (a, b) in zip(z.unbind(0), ab):
        torch.mul(a if whole else a[lo:hi], b if whole else b[lo:hi], out=zj)
    return torch.stack([z[:, start - lo : stop - lo].sum(1) for _, start, stop in segs])


def _as64(vectors: dict[int, Tensor], where: str) -> dict[int, Tensor]:
    """{id: float64 1-D view or copy}, after checking one length, one device, float dtypes."""
    out = {}
    for key, v in vectors.items():
        if v.dim() != 1 or not v.dtype.is_floating_point:
            raise ValueError(f"{where}: expected 1-D float tensors, got {v.dtype} "
                             f"{tuple(v.shape)}")
        out[key] = (v.detach() if v.requires_grad else v).to(torch.float64)
    sizes = {v.numel() for v in out.values()}
    if len(sizes) > 1:
        raise ValueError(f"{where}: expected vectors of one length, got {sorted(sizes)}")
    if len({v.device for v in out.values()}) > 1:
        raise ValueError(f"{where}: expected vectors on one device, got "
                         f"{sorted(str(v.device) for v in out.values())}")
    return out


def _segments(bounds: Bounds, n: int, where: str) -> tuple[list[tuple[int, int, int]], int]:
    """([(s, start, stop)] of the non-empty segments in start order, S), bounds checked."""
    if isinstance(bounds, Tensor):
        bounds = bounds.reshape(-1, 2).tolist()
    segs = []
    for s, (start, stop) in enumerate(bounds):
        start, stop = int(start), int(stop)
        if not 0 <= start <= stop <= n:
            raise ValueError(f"{where}: expected 0 <= start <= stop <= {n} for every "
                             f"segment, got ({start}, {stop})")
        if stop > start:
            segs.append((s, start, stop))
    segs.sort(key=lambda seg: seg[1])
    for (_, a0, b0), (_, a1, b1) in zip(segs, segs[1:]):
        if a1 < b0:
            raise ValueError(f"{where}: expected non-overlapping segments, got "
                             f"({a0}, {b0}) and ({a1}, {b1})")
    return segs, len(bounds)
