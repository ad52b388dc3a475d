"""Pure math of sgdwalk: tensors in, tensors or floats out.

Nothing here knows of schedules, files, models or plots. One idea per module:

    curve      the sampled line curve of a step: floor, height, convexity, barrier, noise
    economy    floor and height from f(0), f'(0), f(1) (and f'(1)) alone
    vector     cosines, norms and dot products, global and per segment (layer)
    hvp        Hessian-vector products and the curvature along a direction
    lanczos    top Hessian eigenvalues: Lanczos, power iteration, the original's variant
    noise      size of mini-batch gradient noise and matched isotropic noise
    barrier    barriers along a segment and rises of a sequence
    flat       flat parameter vectors and their layout
"""

from sgdwalk.functional.barrier import rises, segment_barrier
from sgdwalk.functional.curve import (
    CURVE_KEYS,
    curve_summary,
    make_grid,
    paired_noise,
    refine_floor,
)
from sgdwalk.functional.economy import ECONOMY_KEYS, cubic_floor, quadratic_floor
from sgdwalk.functional.hvp import (
    GradientGraph,
    StepGraph,
    directional_curvature,
    grad_and_hvp,
    hvp,
    predicted_floor,
)
from sgdwalk.functional.lanczos import (
    LanczosResult,
    PowerIterationResult,
    lanczos,
    power_iteration,
    power_iteration_original,
)
from sgdwalk.functional.noise import (
    matched_isotropic_std,
    minibatch_noise_trace,
    per_coordinate_variance,
)
from sgdwalk.functional.vector import (
    cosine,
    dot64,
    segment_cosines,
    segment_dots,
    segment_norms,
    segment_pair_dots,
)

__all__ = [
    "CURVE_KEYS",
    "ECONOMY_KEYS",
    "GradientGraph",
    "LanczosResult",
    "PowerIterationResult",
    "StepGraph",
    "cosine",
    "cubic_floor",
    "curve_summary",
    "directional_curvature",
    "dot64",
    "grad_and_hvp",
    "hvp",
    "lanczos",
    "make_grid",
    "matched_isotropic_std",
    "minibatch_noise_trace",
    "paired_noise",
    "per_coordinate_variance",
    "power_iteration",
    "power_iteration_original",
    "predicted_floor",
    "quadratic_floor",
    "refine_floor",
    "rises",
    "segment_barrier",
    "segment_cosines",
    "segment_dots",
    "segment_norms",
    "segment_pair_dots",
]
