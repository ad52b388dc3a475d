"""Trajectory probe: cosines of consecutive gradients and updates, norms and distances.

Definitions (global, and per layer as vectors in `layout.layers` order):
    cos_grad         cos(g_{t-1}, g_t)              mini-batch gradients, no weight decay
    cos_grad_wd      cos(g_{t-1} + wd theta_{t-1}, g_t + wd theta_t)   as the original code
    cos_update       cos(u_{t-1}, u_t)              applied updates
    cos_grad_update  cos(g_t, u_t)                  -1 for plain SGD without weight decay
    grad_norm        ||g_t||
    update_norm      ||u_t||
    dist_init        ||theta_{t+1} - theta_0||
    path_length      sum_{s<=t} ||u_s||
    dist_path_ratio  dist_init / path_length        1 for a straight walk
Cosines that involve step t-1 are NaN at the first step.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from sgdwalk.probes.base import Probe
from sgdwalk.probes.registry import register_probe

if TYPE_CHECKING:
    import numpy as np
    import torch

    from sgdwalk.probes.context import StepContext

# torch, NumPy and the kernels are imported inside the methods that use them, so that
# registering this probe (which `import sgdwalk.config` does) imports no torch.


# Rows of the per-layer Gram matrices: every dot product the probe needs, in one pass.
G, U, D, PG, PU, GWD, PW = range(7)  # g_t, u_t, theta_{t+1} - theta_0, g_{t-1}, u_{t-1}, wd


@register_probe("trajectory", schedule="every:1", preset="cheap",
                summary="cosines, norms, distance from init, path length")
class Trajectory(Probe):
    """Norms, distances and cosines of consecutive steps, globally and per layer.

    All per-layer dot products of a step come from one `segment_grams` call (a float64
    matrix product per layer) and one transfer of the small (layers, r, r) result; the rest
    is NumPy on per-layer numbers.
    """

    tracks_history = True  # path length and the previous step's vectors need every step

    def __init__(self, schedule=None, per_layer: bool = True):
        super().__init__(schedule)
        self.per_layer = per_layer
        self.theta0: torch.Tensor | None = None
        self.prev_grad: torch.Tensor | None = None
        self.prev_grad_wd: torch.Tensor | None = None  # None: the last step had no decay
        self.prev_update: torch.Tensor | None = None
        self.path_length = 0.0
        self.path_layers: torch.Tensor | None = None
        self._seen: tuple | None = None  # (step, per-layer |u|^2, g + wd theta) of observe
        self._work: list[torch.Tensor] = []  # two scratch vectors: theta - theta_0, g + wd theta

    def _init(self, ctx: StepContext) -> None:
        if self.theta0 is None:
            self.theta0 = ctx.theta.clone()
        if self.path_layers is None:  # on the host: per-layer values are NumPy's
            import torch

            self.path_layers = torch.zeros(len(ctx.layout.layers), dtype=torch.float64)

    def observe(self, ctx: StepContext) -> dict:
        import torch

        from sgdwalk.functional.vector import segment_grams

        self._init(ctx)
        if not self._work or self._work[0].shape != ctx.theta.shape:
            self._work = [torch.empty_like(ctx.theta), torch.empty_like(ctx.theta)]
        d = torch.sub(ctx.theta_next, self.theta0, out=self._work[0])
        rows = [ctx.grad, ctx.update, d]
        prev = self.prev_grad is not None
        decay = prev and not (ctx.weight_decay == 0 and self.prev_grad_wd is None)
        gwd = None
        if prev:
            rows += [self.prev_grad, self.prev_update]
        if decay:
            gwd = _with_decay(ctx, self._work[1])
            rows += [gwd, self.prev_grad if self.prev_grad_wd is None else self.prev_grad_wd]
        gram = segment_grams(rows, ctx.layout.layer_bounds).cpu().numpy()  # (S, r, r)
        total = gram.sum(axis=0)
        uu = gram[:, U, U]
        self._seen = (ctx.step, uu, gwd)
        step_norm = math.sqrt(float(total[U, U]))
        path = self.path_length + step_norm
        dist = math.sqrt(float(total[D, D]))
        nan = math.nan
        out = {
            "grad_norm": math.sqrt(float(total[G, G])),
            "update_norm": step_norm,
            "cos_grad": nan,
            "cos_grad_wd": nan,
            "cos_update": nan,
            "cos_grad_update": _cos1(total, G, U),
            "dist_init": dist,
            "path_length": path,
            "dist_path_ratio": dist / path if path > 0 else nan,
        }
        if prev:
            out["cos_grad"] = _cos1(total, PG, G)
            out["cos_update"] = _cos1(total, PU, U)
            out["cos_grad_wd"] = _cos1(total, PW, GWD) if decay else out["cos_grad"]
        if self.per_layer:
            out |= _per_layer(gram, prev, self.path_layers.numpy())
        return out

    def after(self, ctx: StepContext) -> None:
        import numpy as np
        import torch

        self._init(ctx)
        seen = self._seen if self._seen is not None and self._seen[0] == ctx.step else None
        self._seen = None
        if seen is not None:
            uu = seen[1]
        else:  # a step observe did not see
            from sgdwalk.functional.vector import segment_grams

            uu = segment_grams([ctx.update], ctx.layout.layer_bounds)[:, 0, 0].cpu().numpy()
        self.path_length += math.sqrt(float(uu.sum()))
        if self.per_layer:
            self.path_layers += torch.from_numpy(np.sqrt(uu))
        self.prev_grad = _keep(self.prev_grad, ctx.grad)
        if ctx.weight_decay:
            gwd = seen[2] if seen is not None and seen[2] is not None else _with_decay(ctx)
            self.prev_grad_wd = _keep(self.prev_grad_wd, gwd)
        else:
            self.prev_grad_wd = None  # g_{t-1} + 0 theta: cos_grad_wd is cos_grad
        self.prev_update = _keep(self.prev_update, ctx.update)

    def state_dict(self) -> dict:
        return {
            "theta0": self.theta0,
            "prev_grad": self.prev_grad,
            "prev_grad_wd": self.prev_grad_wd,
            "prev_update": self.prev_update,
            "path_length": self.path_length,
            "path_layers": self.path_layers,
        }

    def load_state_dict(self, state: dict) -> None:
        self.theta0 = state["theta0"]
        self.prev_grad = state["prev_grad"]
        self.prev_grad_wd = state["prev_grad_wd"]
        self.prev_update = state["prev_update"]
        self.path_length = state["path_length"]
        self.path_layers = state["path_layers"]


def _per_layer(gram: np.ndarray, prev: bool, path_before: np.ndarray) -> dict:
    """The per-layer values (float64 vectors) from the per-layer Gram matrices (S, r, r)."""
    import numpy as np
    import torch

    def vec(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))

    gg, uu, gu, dd = gram[:, G, G], gram[:, U, U], gram[:, G, U], gram[:, D, D]
    u_layers = np.sqrt(uu)
    path_layers = path_before + u_layers
    dist_layers = np.sqrt(dd)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = dist_layers / path_layers
    out = {
        "grad_norm_layers": vec(np.sqrt(gg)),
        "update_norm_layers": vec(u_layers),
        "dist_init_layers": vec(dist_layers),
        "path_length_layers": vec(path_layers),
        "dist_path_ratio_layers": vec(ratio),
        "cos_grad_update_layers": vec(_cos(gu, gg, uu)),
    }
    if prev:
        out["cos_grad_layers"] = vec(_cos(gram[:, PG, G], gram[:, PG, PG], gg))
        out["cos_update_layers"] = vec(_cos(gram[:, PU, U], gram[:, PU, PU], uu))
    return out


def _cos(dot, aa, bb):
    """dot / sqrt(aa bb), clamped to [-1, 1]; NaN where a norm is 0 (NumPy, elementwise)."""
    import numpy as np

    den = np.sqrt(aa * bb)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.clip(dot / den, -1.0, 1.0)
    return np.where(den > 0, cos, np.nan)


def _with_decay(ctx: StepContext, out: torch.Tensor | None = None) -> torch.Tensor:
    """g_t + wd theta_t, rounded as `grad + weight_decay * theta` (into `out` if given)."""
    import torch

    if out is None:
        return ctx.grad + ctx.weight_decay * ctx.theta
    return torch.mul(ctx.theta, ctx.weight_decay, out=out).add_(ctx.grad)


def _cos1(total: np.ndarray, i: int, j: int) -> float:
    """cos(v_i, v_j) from a Gram matrix, clamped to [-1, 1]; NaN when a norm is 0."""
    den = math.sqrt(total[i, i] * total[j, j])
    if not den > 0:
        return math.nan
    c = float(total[i, j]) / den
    return min(max(c, -1.0), 1.0) if c == c else c


def _keep(buffer: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    """Copy `value` into a preallocated buffer (allocated on first use)."""
    if buffer is None or buffer.shape != value.shape:
        return value.detach().clone()
    return buffer.copy_(value)
