"""The line curve of one step: its valley floor, height, convexity and barrier.

The line curve of the update u_t is f(a) = L(theta_t + a * u_t), sampled on a sorted grid
of step fractions a that contains 0 (the iterate before the update) and 1 (after it). The
functions here take that grid and the sampled values and know nothing of where they came
from. All arithmetic is float64; float32 inputs are promoted. A K-point curve is analysed
on the host in plain Python floats after one transfer of its K values (per-example losses
in NumPy): at K ~ 13 a kernel launch costs more than the arithmetic, and the line probe
runs this once per source at every probed step (benchmarks/line_floor.py).

Missing values: a non-finite sample (NaN or +-inf, e.g. a diverged probe) is *missing*.
The floor ignores missing samples; every other output that depends on a missing sample is
NaN. Nothing here raises on non-finite data; only malformed grids raise `ValueError`.
"""

from __future__ import annotations

import math
import operator

import numpy as np
import torch
from torch import Tensor

__all__ = ["make_grid", "refine_floor", "curve_summary", "paired_noise", "CURVE_KEYS"]

# Stable output keys of `curve_summary`, in order.
CURVE_KEYS = (
    "floor_a",
    "floor_loss",
    "height",
    "height_end",
    "rel_height",
    "interior",
    "convex",
    "quad_r2",
    "quad_curv",
    "alpha",
    "step_barrier",
    "step_barrier_a",
    "crossing",
    "censored",
)

_NAN = float("nan")


def make_grid(lo: float, hi: float, points: int) -> Tensor:
    """Step fractions `linspace(lo, hi, points)` united with {0, 1}; sorted, unique, float64.

    Linspace points within 1e-9 * (hi - lo) of 0 or 1 are snapped onto them, so round-off
    never leaves a near-duplicate of an end (e.g. -0.25..1.25 in 7 points has exactly 0, 1).

    Returns: (n,) float64 with points <= n <= points + 2.
    """
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"make_grid: expected finite lo < hi, got lo={lo}, hi={hi}")
    if int(points) != points or points < 2:
        raise ValueError(f"make_grid: expected an integer points >= 2, got {points}")
    g = torch.linspace(lo, hi, int(points), dtype=torch.float64)
    snap = 1e-9 * (hi - lo)
    for end in (0.0, 1.0):
        g = torch.where((g - end).abs() <= snap, torch.full_like(g, end), g)
    ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
    return torch.unique(torch.cat([g, ends]), sorted=True)


def _array64(x) -> np.ndarray:
    """x as a 1-D float64 NumPy array on the host (no copy when it already is one)."""
    if isinstance(x, Tensor):
        x = x.detach()
        if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
            x = x.to(device="cpu", dtype=torch.float64)
        x = x.numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _floats(x) -> list[float]:
    """x as a flat list of Python floats (float64)."""
    return _array64(x).tolist()


def _check_grid(grid: list[float], values: list[float], where: str) -> None:
    if len(grid) != len(values):
        raise ValueError(
            f"{where}: expected grid and values of the same shape, "
            f"got {(len(grid),)} and {(len(values),)}"
        )
    if not all(map(math.isfinite, grid)) or any(map(operator.le, grid[1:], grid)):
        raise ValueError(f"{where}: expected a finite, strictly increasing grid")


def refine_floor(grid: Tensor, values: Tensor) -> tuple[float, float]:
    """Valley floor: argmin of the sampled curve, refined below the grid spacing.

    Let i be the index of the smallest finite value. With its finite neighbours
    (a_{i-1}, a_i, a_{i+1}) the parabola through the three points is
        q(a) = f_{i-1} + d1 (a - a_{i-1}) + c (a - a_{i-1})(a - a_i),
        d1 = (f_i - f_{i-1}) / (a_i - a_{i-1}),
        c  = [(f_{i+1} - f_i) / (a_{i+1} - a_i) - d1] / (a_{i+1} - a_{i-1}),
    and the floor is its vertex a* = (a_{i-1} + a_i) / 2 - d1 / (2c), clipped to
    [a_{i-1}, a_{i+1}], with floor loss q(a*). If the best point is the first or last finite
    sample, or c <= 0 (a flat triple), the best sample itself is returned.

    Args:
        grid: (n,) strictly increasing step fractions.
        values: (n,) f at those fractions; non-finite entries are ignored.

    Returns:
        (a_star, floor_loss) as floats; (nan, nan) if no value is finite.
    """
    a, f = _floats(grid), _floats(values)
    _check_grid(a, f, "refine_floor")
    return _refine(a, f)


def _refine(a: list[float], f: list[float]) -> tuple[float, float]:
    """`refine_floor` on checked lists."""
    if not all(map(math.isfinite, f)):
        keep = [i for i, v in enumerate(f) if math.isfinite(v)]
        a, f = [a[i] for i in keep], [f[i] for i in keep]
    if not f:
        return _NAN, _NAN
    i = min(range(len(f)), key=f.__getitem__)  # the first smallest, as argmin
    if i == 0 or i == len(f) - 1:
        return a[i], f[i]
    x0, x1, x2 = a[i - 1 : i + 2]
    y0, y1, y2 = f[i - 1 : i + 2]
    d1 = (y1 - y0) / (x1 - x0)
    c = ((y2 - y1) / (x2 - x1) - d1) / (x2 - x0)
    if not c > 0:
        return x1, y1
    x = min(max(0.5 * (x0 + x1) - d1 / (2.0 * c), x0), x2)
    return x, min(y0 + d1 * (x - x0) + c * (x - x0) * (x - x1), y1)


def _at_edge(f: list[float]) -> float:
    """1.0 when the smallest finite sample (the first, as `_refine` picks it) is the first or
    last finite sample, 0.0 when it lies between them, NaN without a finite sample."""
    idx = [i for i, v in enumerate(f) if math.isfinite(v)]
    if not idx:
        return _NAN
    best = min(idx, key=f.__getitem__)
    return float(best in (idx[0], idx[-1]))


def _second_differences(a: list[float], f: list[float]) -> list[float]:
    """D_i = 2 (chord_i - f_i), the chord joining the neighbours evaluated at a_i.

    On a uniform grid D_i = f_{i-1} - 2 f_i + f_{i+1} exactly; on any grid D_i < 0 means
    f_i lies |D_i| / 2 above the chord, so D_i >= -eps is "convex within the noise".
    """
    out = []
    for i in range(1, len(a) - 1):
        w = (a[i + 1] - a[i]) / (a[i + 1] - a[i - 1])  # weight of the left neighbour
        out.append(2.0 * (w * f[i - 1] + (1.0 - w) * f[i + 1] - f[i]))
    return out


def _dot(u: list[float], v: list[float]) -> float:
    return math.fsum(map(operator.mul, u, v))


def _quadratic_fit(a: list[float], f: list[float]) -> tuple[float, float]:
    """Least-squares q(a) = p0 + p1 a + p2 a^2; returns (R^2, q'' = 2 p2).

    Solved with the polynomials 1, q1, q2 orthogonal on the sample points (three-term
    Gram-Schmidt of 1, s, s^2 with s the centred and scaled abscissae), which is as stable
    as a QR least-squares solve: q1 = s - mean(s), q2 = s^2 - b q1 - mean(s^2) with
    b = <s^2, q1> / <q1, q1>, coefficients c_k = <f, q_k> / <q_k, q_k>, and p2 = c2 because
    only q2 holds s^2. R^2 = 1 - SS_res / SS_tot; a constant curve (SS_tot = 0) is fitted
    exactly: R^2 = 1.
    """
    n = len(f)
    if n < 3:
        return _NAN, _NAN
    # Centre and scale a for conditioning; the curvature is mapped back exactly.
    mid, half = 0.5 * (a[-1] + a[0]), 0.5 * (a[-1] - a[0])
    s = [(x - mid) / half for x in a]
    s2 = [x * x for x in s]
    m1 = math.fsum(s) / n
    q1 = [x - m1 for x in s]
    n1 = _dot(q1, q1)
    b, m2 = _dot(s2, q1) / n1, math.fsum(s2) / n
    q2 = [x - b * y - m2 for x, y in zip(s2, q1)]
    n2 = _dot(q2, q2)
    mean = math.fsum(f) / n
    dev = [v - mean for v in f]
    c1, c2 = _dot(dev, q1) / n1, _dot(dev, q2) / n2
    ss_tot = _dot(dev, dev)
    res = [d - c1 * x - c2 * y for d, x, y in zip(dev, q1, q2)]
    ss_res = _dot(res, res)
    r2 = 1.0 if ss_tot == 0.0 else 1.0 - ss_res / ss_tot
    return r2, 2.0 * c2 / half**2


def _flag(cond: bool, *deps: float) -> float:
    return _NAN if any(math.isnan(d) for d in deps) else float(cond)


def curve_summary(grid: Tensor, values: Tensor, eps: float) -> dict[str, float]:
    """Every per-step quantity of a sampled line curve f(a), as a dict of floats.

    With f0 = f(0), f1 = f(1) and the refined floor (a*, F) of `refine_floor`:

        floor_a, floor_loss  a*, F
        height               f0 - F        (the iterate's height above its own floor)
        height_end           f1 - F
        rel_height           (f0 - F) / f0 (NaN if f0 = 0)
        interior             1.0 if 0 < a* < 1 and min(f0, f1) - F > eps else 0.0
        convex               1.0 if every D_i >= -eps, or quad_r2 >= 0.95 and quad_curv > 0;
                             D_i = 2 (chord of neighbours at a_i - f_i), which on a uniform
                             grid is the second difference f_{i-1} - 2 f_i + f_{i+1}
        quad_r2, quad_curv   R^2 and second derivative q'' of the least-squares parabola
                             through all samples
        alpha                1 / a* - 1 (0 landed on the floor, > 0 overshot it, < 0 stopped
                             short; Cockpit's formula, not its fit: docs/metrics.md); NaN
                             when a* <= 0 or the floor is censored
        step_barrier         max_{a_i in [0,1]} f(a_i) - max(f0, f1)   (>= 0)
        step_barrier_a       the a_i where that maximum lies (an end if it is 0)
        crossing             1.0 if step_barrier > eps (an interior maximum above both ends)
        censored             1.0 if the smallest finite sample is the first or last finite
                             one: the floor lies at or beyond the grid's edge, so floor_a
                             and floor_loss are bounds (the true a* beyond the edge, the
                             true F below), height and height_end lower bounds, and alpha
                             is NaN; 0.0 for a floor measured inside the grid

    Non-finite samples are missing: the floor ignores them, every other key that depends
    on one is NaN (flags included), and a NaN `eps` makes the flags NaN.

    Args:
        grid: (n,) strictly increasing step fractions, containing 0 and 1 exactly.
        values: (n,) loss f at those fractions (any float dtype).
        eps: noise level in loss units (>= 0), e.g. 2 * `paired_noise`.

    Returns: dict with exactly the keys `CURVE_KEYS`.
    """
    a, f = _floats(grid), _floats(values)
    _check_grid(a, f, "curve_summary")
    eps = float(eps)
    if eps < 0:
        raise ValueError(f"curve_summary: expected eps >= 0, got {eps}")
    if a.count(0.0) != 1 or a.count(1.0) != 1:
        raise ValueError("curve_summary: expected a grid containing 0.0 and 1.0 exactly")
    all_ok = all(map(math.isfinite, f))
    if not all_ok:
        f = [v if math.isfinite(v) else _NAN for v in f]
    f0, f1 = f[a.index(0.0)], f[a.index(1.0)]

    a_star, F = _refine(a, f)
    censored = _at_edge(f)
    height, height_end = f0 - F, f1 - F
    rel_height = height / f0 if f0 != 0 else _NAN
    interior = _flag(0.0 < a_star < 1.0 and min(f0, f1) - F > eps, a_star, f0, f1, F, eps)
    alpha = 1.0 / a_star - 1.0 if a_star > 0 and censored == 0.0 else _NAN

    if all_ok:
        r2, curv = _quadratic_fit(a, f)
        d = _second_differences(a, f)
        convex = _flag(all(x >= -eps for x in d) or (r2 >= 0.95 and curv > 0), eps)
    else:
        r2 = curv = convex = _NAN

    step = [(v, x) for x, v in zip(a, f) if 0.0 <= x <= 1.0]
    if all(math.isfinite(v) for v, _ in step):
        j = max(range(len(step)), key=lambda k: step[k][0])  # the first largest, as argmax
        barrier, barrier_a = step[j][0] - max(f0, f1), step[j][1]
    else:
        barrier = barrier_a = _NAN
    crossing = _flag(barrier > eps, barrier, eps)

    return {
        "floor_a": a_star,
        "floor_loss": F,
        "height": height,
        "height_end": height_end,
        "rel_height": rel_height,
        "interior": interior,
        "convex": convex,
        "quad_r2": r2,
        "quad_curv": curv,
        "alpha": alpha,
        "step_barrier": barrier,
        "step_barrier_a": barrier_a,
        "crossing": crossing,
        "censored": censored,
    }


def paired_noise(per_example_a: Tensor, per_example_b: Tensor,
                 population: int | None = None) -> float:
    """Standard error of a loss difference measured on the same n examples.

    With d_j = l_a(x_j) - l_b(x_j) the paired per-example differences and N = population,
    the number of examples of the objective the n examples were drawn from (without
    replacement; None: an infinite population, no correction),
        SE = std(d, ddof=1) / sqrt(n) * sqrt((N - n) / (N - 1)),
    the finite-population correction making SE exactly 0 when the n examples are the
    objective's whole data (N = n). SE is floored at the round-off of the two means,
        SE_min = 16 eps_mach (1 + max(mean|l_a|, mean|l_b|)) sqrt(2 / n),
    eps_mach of the inputs' (promoted) dtype, float64 at best (2.2e-16): a per-example
    loss carries an absolute round-off of a few eps_mach times 1 + |l| (cross-entropy's
    log-softmax normalises by a sum >= 1, so it does not shrink with the loss; 16 covers
    the log-softmax over 10 classes about 5x and the logits' own error), independent
    across examples and points, so a mean of n paired differences carries sqrt(2 / n)
    times it (derivation and measurements: docs/claims.md, rule 1). The noise threshold of
    `curve_summary` is typically eps = 2 * SE, with l_a, l_b the per-example losses at two
    points of the line (e.g. a = 0 and a = 1).

    Args:
        per_example_a, per_example_b: (n,) per-example losses on the same examples.
        population: N >= n, or None.

    Returns: SE as a float; NaN if n < 2 or any loss is non-finite.
    """
    la, lb = torch.as_tensor(per_example_a), torch.as_tensor(per_example_b)
    if la.shape != lb.shape or la.dim() != 1:
        raise ValueError(
            "paired_noise: expected two 1-D tensors of the same length, "
            f"got {tuple(la.shape)} and {tuple(lb.shape)}"
        )
    n = la.numel()
    if population is not None and not (int(population) == population and population >= n):
        raise ValueError(
            f"paired_noise: expected a population of at least the {n} examples, "
            f"got {population}"
        )
    dtype = torch.promote_types(la.dtype, lb.dtype)
    mach = torch.finfo(dtype if dtype.is_floating_point else torch.float64).eps
    x, y = _array64(la), _array64(lb)
    if n < 2:
        return _NAN
    d = x - y
    d -= d.sum() / n
    ss = float(d @ d)
    sx, sy = float(np.abs(x).sum()), float(np.abs(y).sum())
    if not (math.isfinite(ss) and math.isfinite(sx) and math.isfinite(sy)):
        return _NAN  # a non-finite loss makes these sums non-finite
    se = math.sqrt(ss / (n - 1)) / math.sqrt(n)
    if population is not None:  # sampled without replacement from N examples
        se *= math.sqrt((population - n) / (population - 1))
    return max(se, 16.0 * mach * (1.0 + max(sx, sy) / n) * math.sqrt(2.0 / n))
