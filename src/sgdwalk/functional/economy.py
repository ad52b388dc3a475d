"""Valley floor and height from a few numbers instead of a sampled line curve.

The "economy" estimates need only f(0), f'(0) = <g, u>, f(1) and optionally f'(1) =
<g(theta + u), u> of the line curve f(a) = L(theta + a u): two losses and one or two
gradients that training computes anyway. Both fits are exact when f is a quadratic; the
cubic one is exact when f is a cubic.

Both minimise the fitted model over a bracket [lo, hi] of step fractions (default
-0.25..1.25, the default probe grid), so their floors are comparable with a grid floor.
Inputs are floats (or 0-d tensors); arithmetic is float64. Any non-finite input gives NaN
in every output.
"""

from __future__ import annotations

import math

__all__ = ["quadratic_floor", "cubic_floor", "ECONOMY_KEYS"]

# Stable output keys of both fits, in order.
ECONOMY_KEYS = ("floor_a", "floor_loss", "height", "height_end", "curv")

_NAN = float("nan")


def _check_bracket(lo: float, hi: float, where: str) -> None:
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(f"{where}: expected finite lo <= hi, got lo={lo}, hi={hi}")


def _result(a: float, F: float, f0: float, f1: float, curv: float) -> dict[str, float]:
    return {"floor_a": a, "floor_loss": F, "height": f0 - F, "height_end": f1 - F, "curv": curv}


def quadratic_floor(
    f0: float, df0: float, f1: float, lo: float = -0.25, hi: float = 1.25
) -> dict[str, float]:
    """Floor of the parabola through f(0), f'(0) and f(1).

    q(a) = f0 + df0 a + c a^2 with c = f1 - f0 - df0, so q(0) = f0, q'(0) = df0, q(1) = f1.
    If c > 0 the floor is the vertex a* = -df0 / (2c), clipped to [lo, hi]. If c <= 0 the
    parabola has no minimum (concave or straight): the floor is the lower of the two ends
    lo, hi of the bracket (lo on a tie).

    Args:
        f0: f(0), the loss before the step.
        df0: f'(0) = <grad L(theta), u>, the slope along the step.
        f1: f(1), the loss after the step.
        lo, hi: the bracket of step fractions the floor is searched in.

    Returns: dict with `ECONOMY_KEYS`: floor_a a*, floor_loss F = q(a*), height f0 - F,
    height_end f1 - F, curv q'' = 2c.
    """
    _check_bracket(lo, hi, "quadratic_floor")
    f0, df0, f1 = float(f0), float(df0), float(f1)
    if not all(math.isfinite(x) for x in (f0, df0, f1)):
        return dict.fromkeys(ECONOMY_KEYS, _NAN)
    c = f1 - f0 - df0

    def q(a: float) -> float:
        return f0 + a * (df0 + c * a)

    if c > 0:
        a = min(max(-df0 / (2.0 * c), lo), hi)
    else:
        a = lo if q(lo) <= q(hi) else hi
    return _result(a, q(a), f0, f1, 2.0 * c)


def cubic_floor(
    f0: float, df0: float, f1: float, df1: float, lo: float = -0.25, hi: float = 1.25
) -> dict[str, float]:
    """Floor of the Hermite cubic through f(0), f'(0), f(1), f'(1).

    p(a) = f0 + df0 a + c2 a^2 + c3 a^3 with
        c2 = 3 (f1 - f0) - 2 df0 - df1,   c3 = 2 (f0 - f1) + df0 + df1.
    Its local minimum solves p'(a) = df0 + 2 c2 a + 3 c3 a^2 = 0 with p''(a) > 0:
        a* = -df0 / (c2 + sqrt(D)) = (sqrt(D) - c2) / (3 c3),   D = c2^2 - 3 c3 df0 > 0
    (the first form is used when c2 > 0, the second otherwise, to avoid cancellation).
    If that minimum lies in [lo, hi] it is the floor, even when a cubic extrapolated to an
    end of the bracket dips lower (extrapolation of a cubic is not trusted). Otherwise the
    floor is the lower end of [lo, hi] (lo on a tie). For c3 = 0 this is `quadratic_floor`.

    Args:
        f0, df0: f(0) and f'(0) = <grad L(theta), u>.
        f1, df1: f(1) and f'(1) = <grad L(theta + u), u>.
        lo, hi: the bracket of step fractions the floor is searched in.

    Returns: dict with `ECONOMY_KEYS`: floor_a a*, floor_loss F = p(a*), height f0 - F,
    height_end f1 - F, curv p''(a*) (the curvature at the floor).
    """
    _check_bracket(lo, hi, "cubic_floor")
    f0, df0, f1, df1 = float(f0), float(df0), float(f1), float(df1)
    if not all(math.isfinite(x) for x in (f0, df0, f1, df1)):
        return dict.fromkeys(ECONOMY_KEYS, _NAN)
    c2 = 3.0 * (f1 - f0) - 2.0 * df0 - df1
    c3 = 2.0 * (f0 - f1) + df0 + df1

    def p(a: float) -> float:
        return f0 + a * (df0 + a * (c2 + a * c3))

    def p2(a: float) -> float:
        return 2.0 * c2 + 6.0 * c3 * a

    a = _NAN
    D = c2 * c2 - 3.0 * c3 * df0
    if D > 0:
        r = math.sqrt(D)
        if c2 > 0:
            a = -df0 / (c2 + r)
        elif c3 != 0:
            a = (r - c2) / (3.0 * c3)
    if not lo <= a <= hi:  # also catches "no local minimum" (a is NaN)
        a = lo if p(lo) <= p(hi) else hi
    return _result(a, p(a), f0, f1, p2(a))
