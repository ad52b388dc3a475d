"""Curvature probe: the curvature of the batch loss along the step, by one Hessian-vector
product of the step's batch loss at theta_t (under the evaluator's BN policy).

    curv_uhu           u_t^T H u_t
    curv_kappa         kappa_t = u_t^T H u_t / ||u_t||^2
    curv_lr_kappa      lr x kappa_t: for GD (u = -lr g) the floor sits at a* = 1/(lr kappa),
                       so > 1 means an interior floor and > 2 a bounce to a higher wall
    curv_pred_floor_a  -<g_t, u_t> / (u_t^T H u_t), the floor of the local quadratic model
                       (NaN when u^T H u <= 0)
    curv_step_graph    1 when H u_t came from the training step's own graph, 0 when from the
                       probe's own forward and double backward

Where the training loop kept the step's graph (`ctx.step_graph`: the Trainer does at the
steps where this probe is due, when the training forward is the probing one: BN policy
"batch" or no BN, no active dropout, one chunk, one process), H u_t is one backward through
it: the same Hessian (the training forward's batch loss at theta_t), without the probe's own
forward and create_graph backward. Everywhere else (those conditions unmet, a user's own
loop, GD's chunked batch) the probe runs its own (`evaluator.hessian`). A model with an op
that has no double backward (fused attention kernels, which the evaluator avoids by taking
the math path) fails the shared product: the probe then takes its own from that step on.
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
    takes_step_graph = True  # set False on this probe when the shared product fails

    def observe(self, ctx: StepContext) -> dict:
        from sgdwalk.functional.hvp import predicted_floor
        from sgdwalk.functional.vector import dot64

        u = ctx.update
        hu = self._shared(ctx)
        shared = hu is not None
        if not shared:
            hu = ctx.evaluator.hessian(ctx.batch, ctx.theta) @ u
        uhu, uu = dot64(u, hu), dot64(u, u)
        kappa = uhu / uu if uu > 0 else math.nan
        return {
            "curv_uhu": uhu,
            "curv_kappa": kappa,
            "curv_lr_kappa": ctx.lr * kappa,
            "curv_pred_floor_a": predicted_floor(ctx.grad_dot_update, uhu),
            "curv_step_graph": float(shared),
        }

    def _shared(self, ctx: StepContext):
        """H u_t through the step's graph, or None (no graph, or an op without a double
        backward in it: then never asked for again)."""
        if ctx.step_graph is None or not self.takes_step_graph:
            return None
        try:
            return ctx.step_graph @ ctx.update
        except RuntimeError as exc:
            if "not implemented" not in str(exc):
                raise
            self.takes_step_graph = False
            return None
