"""Sharpness probe: the top Hessian eigenvalues of the probe-set loss, and how much of the
mini-batch gradient lies in their eigenspace (claim C11).

Lanczos with full reorthogonalisation (`functional.lanczos`) on H = grad^2 L_probe(theta_t),
each matvec one backward through the probe-set gradient's graph, built once per measurement
(forward and create_graph backward of every chunk) and freed after it (`Hessian.kept`: the
memory of the whole probe set's double-backward graph while the solve runs).
Warm-started from the previous eigenvectors, which are part of
the probe's state (checkpointed); stopped when every relative residual
||H v - lambda v|| / |lambda| is below `tol`, or after `max_iter` matvecs. The Krylov basis
is kept in the model's dtype and device.

    sharp_eigs        (vector) the top-k eigenvalues, descending
    sharp_lambda_max  lambda_1
    sharp_lr_lambda   lr x lambda_1 (GD is stable along v_1 only while it is below 2)
    sharp_residual    the largest relative residual of the returned pairs
    sharp_matvecs     Hessian-vector products used
    align_top1        cos^2(g_t, v_1) = <g_t, v_1>^2 / ||g_t||^2
    align_topk        ||V_k g_t||^2 / ||g_t||^2, the share of g_t in span(v_1..v_k)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sgdwalk.probes.base import Probe
from sgdwalk.probes.checks import expect, expect_float32, expect_positive
from sgdwalk.probes.registry import register_probe

if TYPE_CHECKING:
    import torch

    from sgdwalk.probes.context import StepContext

# torch, NumPy and the kernels are imported inside the methods that use them, so that
# registering this probe (which `import sgdwalk.config` does) imports no torch.


@dataclass(frozen=True)
class SharpnessSettings:
    """The sharpness probe's walk.* keys."""

    sharpness_k: int = 1  # eigenvalues to track
    sharpness_tol: float = 1e-3  # Lanczos stops when residual / |lambda| is below this
    sharpness_max_iter: int = 50  # Lanczos iterations at most

    def __post_init__(self):
        expect_float32(self, "sharpness_tol")
        expect_positive(self, "sharpness_k", "sharpness_max_iter")
        expect(self.sharpness_tol > 0, "sharpness_tol", "> 0", self.sharpness_tol)

    def when_on(self) -> None:
        """What only matters (and only conflicts) when the sharpness probe runs."""
        expect(self.sharpness_k <= self.sharpness_max_iter, "sharpness_k",
               f"at most sharpness_max_iter ({self.sharpness_max_iter})", self.sharpness_k)


class WarmLanczos(Probe):
    """A probe that tracks the top-k eigenpairs of a symmetric operator by Lanczos, warm-
    started from its previous eigenvectors (part of its checkpointed state).

    Args:
        schedule: step -> bool.
        k: eigenpairs wanted.
        tol: relative residual that stops Lanczos.
        max_iter: most matvecs per measurement (>= k).
        source: evaluator source whose loss is analysed ("probe").
    """

    def __init__(self, schedule=None, k: int = 1, tol: float = 1e-3, max_iter: int = 50,
                 source: str = "probe"):
        super().__init__(schedule)
        if not 1 <= k <= max_iter:
            raise ValueError(f"{type(self).__name__}: expected 1 <= k <= max_iter, got k={k}, "
                             f"max_iter={max_iter}")
        self.k, self.tol, self.max_iter = int(k), float(tol), int(max_iter)
        self.sources = (source,)
        self.vectors: torch.Tensor | None = None  # (k, P) previous Ritz vectors (warm start)

    def solve(self, ctx: StepContext, matvec):
        """Lanczos on `matvec` (P -> P) from the previous eigenvectors; keeps the new ones."""
        from sgdwalk.functional.lanczos import lanczos

        theta = ctx.theta
        res = lanczos(matvec, dim=theta.numel(), k=min(self.k, theta.numel()), tol=self.tol,
                      max_iter=self.max_iter, v0=self.vectors, generator=ctx.generator,
                      dtype=theta.dtype, device=theta.device)
        self.vectors = res.eigenvectors.detach().clone()
        return res

    def state_dict(self) -> dict:
        return {"vectors": self.vectors}

    def load_state_dict(self, state: dict) -> None:
        self.vectors = state["vectors"]


@register_probe("sharpness", schedule="every:100", preset="curvature",
                settings=SharpnessSettings,
                summary="top-k Hessian eigenvalues (Lanczos) + gradient alignment")
class Sharpness(WarmLanczos):
    """Top-k Hessian eigenpairs of the probe-set loss by warm-started Lanczos (the
    arguments are WarmLanczos's)."""

    @classmethod
    def from_config(cls, cfg, schedule) -> Sharpness:
        return cls(schedule, cfg.sharpness_k, cfg.sharpness_tol, cfg.sharpness_max_iter)

    def observe(self, ctx: StepContext) -> dict:
        hessian = ctx.evaluator.hessian(ctx.data(self.sources[0]), ctx.theta)
        with hessian.kept() as op:  # one backward per product; the graph freed after
            res = self.solve(ctx, lambda v: op @ v)
        eigs = res.eigenvalues.double().cpu()
        g = ctx.grad.double()
        gg = float(g @ g)
        proj = self.vectors.double() @ g  # (k,) coordinates of g in the orthonormal Ritz basis
        nan = math.nan
        return {
            "sharp_eigs": eigs,
            "sharp_lambda_max": float(eigs[0]),
            "sharp_lr_lambda": ctx.lr * float(eigs[0]),
            "sharp_residual": float(res.residuals.max()),
            "sharp_matvecs": res.n_matvec,
            "align_top1": float(proj[0] ** 2) / gg if gg > 0 else nan,
            "align_topk": float(proj @ proj) / gg if gg > 0 else nan,
        }
