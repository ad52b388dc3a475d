"""Curvature probe: the curvature of the batch loss along the step, by one Hessian-vector
product of the step's batch loss at theta_t (under the evaluator's BN policy).

    curv_uhu           u_t^T H u_t
    curv_kappa         kappa_t = u_t^T H u_t / ||u_t||^2
    curv_lr_kappa      lr x kappa_t: for GD (u = -lr g) the floor sits at a* = 1/(lr kappa),
                       so > 1 means an interior floor and > 2 a bounce to a higher wall
    curv_pred_floor_a  -<g_t, u_t> / (u_t^T H u_t), the floor of the local quadratic model
                       (NaN when u^T H u <= 0)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from sgdwalk.probes.base import Probe
from sgdwalk.probes.registry import register_probe

if TYPE_CHECKING:
    from sgdwalk.probes.context import StepContext

# torch, NumPy and the kernels are imported inside the methods that use them, so that
# registering this probe (which `import sgdwalk.config` does) imports no torch.


@register_probe("curvature", schedule="every:1", preset="curvature",
                summary="u^T H u / |u|^2 by one Hessian-vector product")
class Curvature(Probe):
    sources = ("batch",)

    def observe(self, ctx: StepContext) -> dict:
        from sgdwalk.functional.hvp import predicted_floor
        from sgdwalk.functional.vector import dot64

        u = ctx.update
        hu = ctx.evaluator.hessian(ctx.batch, ctx.theta) @ u
        uhu, uu = dot64(u, hu), dot64(u, u)
        kappa = uhu / uu if uu > 0 else math.nan
        return {
            "curv_uhu": uhu,
            "curv_kappa": kappa,
            "curv_lr_kappa": ctx.lr * kappa,
            "curv_pred_floor_a": predicted_floor(ctx.grad_dot_update, uhu),
        }
