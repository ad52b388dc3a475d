"""Preconditioned sharpness: the top eigenvalues of P^-1 H for Adam and AdamW, with P the
optimizer's current diagonal preconditioner, and the curvature along the step in the same
geometry (Cohen et al. 2022, "Adaptive Gradient Methods at the Edge of Stability").

Their definition (Section 2): Adam's update is theta_{t+1} = theta_t - lr P_t^-1 m_t with
m_t = beta1 m_{t-1} + (1 - beta1) g_t (the optimizer's exp_avg) and

    P_t = (1 - beta1^t) diag( sqrt(v_t / (1 - beta2^t)) + eps ),

v_t = beta2 v_{t-1} + (1 - beta2) g_t^2 (exp_avg_sq; its running maximum under amsgrad),
t the optimizer's step count after the step, so P_t is the preconditioner of the update
u_t just applied (AdamW adds its decoupled decay -lr wd theta_t outside P). Frozen P, EMA
momentum beta1 and step lr on a quadratic are stable iff lr lambda_1(P^-1 H) < (2 + 2 beta1)
/ (1 - beta1) (38 / lr for beta1 = 0.9): the adaptive edge of stability, where they find
full-batch Adam trains.

P^-1 H is similar to the symmetric S = P^-1/2 H P^-1/2 (same eigenvalues), whose top
eigenpairs warm-started Lanczos finds (`functional.lanczos`, one Hessian-vector product of
the probe-set loss per matvec, as the sharpness probe). Along the step, in the geometry
<a, b>_P = a^T P b where P^-1 H is self-adjoint, the Rayleigh quotient is
u^T H u / u^T P u (H of the step's batch loss at theta_t, one more product).

    psharp_eigs        (vector) top-k eigenvalues of P^-1 H, descending
    psharp_lambda_max  lambda_1(P^-1 H)
    psharp_lr_lambda   lr x lambda_1
    psharp_edge        lr lambda_1 (1 - beta1) / (2 + 2 beta1): 1 at the adaptive edge
    psharp_residual    largest relative residual ||S w - lambda w|| / |lambda| returned
    psharp_matvecs     Hessian-vector products used by Lanczos
    pcurv_kappa        u_t^T H u_t / u_t^T P u_t, the curvature along the step in P's geometry
    pcurv_lr_kappa     lr x pcurv_kappa
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sgdwalk.errors import ConfigError
from sgdwalk.probes.checks import expect, expect_float32, expect_positive
from sgdwalk.probes.registry import register_probe
from sgdwalk.probes.sharpness import WarmLanczos

if TYPE_CHECKING:
    import torch

    from sgdwalk.probes.context import StepContext

# torch and the kernels are imported inside the methods that use them, so that registering
# this probe (which `import sgdwalk.config` does) imports no torch.


@dataclass(frozen=True)
class PrecondSharpnessSettings:
    """The preconditioned sharpness probe's walk.* keys."""

    precond_k: int = 1  # eigenvalues of P^-1 H to track
    precond_tol: float = 1e-3  # Lanczos stops when residual / |lambda| is below this
    precond_max_iter: int = 50  # Lanczos iterations at most

    def __post_init__(self):
        expect_float32(self, "precond_tol")
        expect_positive(self, "precond_k", "precond_max_iter")
        expect(self.precond_tol > 0, "precond_tol", "> 0", self.precond_tol)

    def when_on(self) -> None:
        """What only matters (and only conflicts) when the probe runs."""
        expect(self.precond_k <= self.precond_max_iter, "precond_k",
               f"at most precond_max_iter ({self.precond_max_iter})", self.precond_k)


def adam_preconditioner(optimizer, params, like: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(P, beta1): Adam's or AdamW's current diagonal preconditioner as a flat vector in the
    layout order of `params`, in `like`'s dtype, and the first group's beta1.

    P_i = (1 - beta1^t) (sqrt(v_i / (1 - beta2^t)) + eps), per parameter group (betas, eps,
    amsgrad), t the parameter's step count. Raises ConfigError for any other optimizer (no
    diagonal preconditioner) or a parameter the optimizer has no state for yet.
    """
    import torch

    if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        got = type(optimizer).__name__ if optimizer is not None else "none"
        raise ConfigError(f"precond_sharpness: expected an optimizer with a diagonal "
                          f"preconditioner (Adam or AdamW), got {got}")
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    parts = []
    for p in params:
        state = optimizer.state.get(p, {})
        if id(p) not in group_of or "exp_avg_sq" not in state:
            raise ConfigError(f"precond_sharpness: expected Adam state for every trained "
                              f"parameter, got none for one of shape {tuple(p.shape)}")
        group = group_of[id(p)]
        beta1, beta2 = group["betas"]
        t = float(state["step"])
        v = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
        v = v.detach().to(like.dtype).reshape(-1)
        parts.append((1 - beta1**t) * ((v / (1 - beta2**t)).sqrt() + group["eps"]))
    beta1 = float(optimizer.param_groups[0]["betas"][0])
    return torch.cat(parts).to(like.device), beta1


@register_probe("precond_sharpness", schedule="every:100", preset=None,
                settings=PrecondSharpnessSettings,
                summary="top eigenvalues of P^-1 H for Adam/AdamW (Lanczos) + u^T H u / u^T P u")
class PrecondSharpness(WarmLanczos):
    """Top-k eigenvalues of P^-1 H (probe set) and the step's curvature in P's geometry
    (the arguments are WarmLanczos's)."""

    def __init__(self, schedule=None, k: int = 1, tol: float = 1e-3, max_iter: int = 50,
                 source: str = "probe"):
        super().__init__(schedule, k, tol, max_iter, source)
        self.sources = (source, "batch")

    @classmethod
    def from_config(cls, cfg, schedule) -> PrecondSharpness:
        return cls(schedule, cfg.precond_k, cfg.precond_tol, cfg.precond_max_iter)

    def observe(self, ctx: StepContext) -> dict:
        from sgdwalk.functional.vector import dot64

        theta, u = ctx.theta, ctx.update
        p, beta1 = adam_preconditioner(ctx.optimizer, ctx.params, theta)
        d = p.rsqrt()  # P^-1/2
        hessian = ctx.evaluator.hessian(ctx.data(self.sources[0]), theta)
        with hessian.kept() as op:  # one backward per product; the graph freed after
            res = self.solve(ctx, lambda w: d * (op @ (d * w)))
        eigs = res.eigenvalues.double().cpu()
        lam = float(eigs[0])
        uhu = dot64(u, ctx.evaluator.hessian(ctx.batch, theta) @ u)
        upu = dot64(u, p * u)
        kappa = uhu / upu if upu > 0 else math.nan
        return {
            "psharp_eigs": eigs,
            "psharp_lambda_max": lam,
            "psharp_lr_lambda": ctx.lr * lam,
            "psharp_edge": ctx.lr * lam * (1 - beta1) / (2 + 2 * beta1),
            "psharp_residual": float(res.residuals.max()),
            "psharp_matvecs": res.n_matvec,
            "pcurv_kappa": kappa,
            "pcurv_lr_kappa": ctx.lr * kappa,
        }
