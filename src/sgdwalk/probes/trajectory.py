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

import torch

from sgdwalk.probes.base import Probe, StepContext


class LayerSums:
    """Per-layer sums of a flat vector, for a layout whose layers tile it in order.

    One `torch.segment_reduce` with precomputed lengths (no per-call validation): the
    trajectory needs a dozen of these per step, and on small models their overhead was
    most of the probe's cost. Inputs are float64, so sums are float64.
    """

    def __init__(self, layer_bounds, device):
        starts = [a for a, _ in layer_bounds]
        stops = [b for _, b in layer_bounds]
        if starts and (starts[0] != 0 or starts[1:] != stops[:-1]):
            raise ValueError(f"LayerSums: expected contiguous layers, got {layer_bounds}")
        self.lengths = torch.tensor([b - a for a, b in layer_bounds], device=device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.segment_reduce(x, "sum", lengths=self.lengths, unsafe=True)


def _cos(dot: torch.Tensor, aa: torch.Tensor, bb: torch.Tensor) -> torch.Tensor:
    """dot / sqrt(aa bb), clamped to [-1, 1]; NaN where a norm is 0."""
    den = (aa * bb).sqrt()
    cos = (dot / den).clamp(-1.0, 1.0)
    return torch.where(den > 0, cos, torch.full_like(cos, math.nan))


def _f(x: torch.Tensor) -> float:
    return float(x)


class Trajectory(Probe):
    name = "trajectory"
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
        self._sums: LayerSums | None = None
        self._uu: tuple[int, torch.Tensor] | None = None  # (step, per-layer |u|^2) of observe

    def _init(self, ctx: StepContext) -> None:
        if self.theta0 is None:
            self.theta0 = ctx.theta.clone()
        if self.path_layers is None:
            self.path_layers = torch.zeros(len(ctx.layout.layers), dtype=torch.float64)
        if self._sums is None:
            self._sums = LayerSums(ctx.layout.layer_bounds, ctx.theta.device)

    def observe(self, ctx: StepContext) -> dict:
        self._init(ctx)
        S = self._sums
        g, u = ctx.grad.double(), ctx.update.double()
        d = (ctx.theta_next - self.theta0).double()
        gg, uu, gu, dd = S(g * g), S(u * u), S(g * u), S(d * d)
        self._uu = (ctx.step, uu)
        u_layers = uu.sqrt().cpu()
        step_norm = math.sqrt(_f(uu.sum()))
        path = self.path_length + step_norm
        dist = math.sqrt(_f(dd.sum()))
        nan = math.nan
        out = {
            "grad_norm": math.sqrt(_f(gg.sum())),
            "update_norm": step_norm,
            "cos_grad": nan,
            "cos_grad_wd": nan,
            "cos_update": nan,
            "cos_grad_update": _f(_cos(gu.sum(), gg.sum(), uu.sum())),
            "dist_init": dist,
            "path_length": path,
            "dist_path_ratio": dist / path if path > 0 else nan,
        }
        if self.prev_grad is not None:
            pg, pu = self.prev_grad.double(), self.prev_update.double()
            pgg, pgg_g, puu, puu_u = S(pg * pg), S(pg * g), S(pu * pu), S(pu * u)
            out["cos_grad"] = _f(_cos(pgg_g.sum(), pgg.sum(), gg.sum()))
            out["cos_update"] = _f(_cos(puu_u.sum(), puu.sum(), uu.sum()))
            if ctx.weight_decay == 0 and self.prev_grad_wd is None:
                out["cos_grad_wd"] = out["cos_grad"]  # no weight decay at either step
            else:
                gwd = (ctx.grad + ctx.weight_decay * ctx.theta).double()
                pw = (self.prev_grad if self.prev_grad_wd is None else self.prev_grad_wd).double()
                out["cos_grad_wd"] = _f(_cos((pw * gwd).sum(), (pw * pw).sum(), (gwd * gwd).sum()))
        if self.per_layer:
            path_layers = self.path_layers + u_layers
            dist_layers = dd.sqrt().cpu()
            out |= {
                "grad_norm_layers": gg.sqrt().cpu(),
                "update_norm_layers": u_layers,
                "dist_init_layers": dist_layers,
                "path_length_layers": path_layers,
                "dist_path_ratio_layers": dist_layers / path_layers,
                "cos_grad_update_layers": _cos(gu, gg, uu).cpu(),
            }
            if self.prev_grad is not None:
                out["cos_grad_layers"] = _cos(pgg_g, pgg, gg).cpu()
                out["cos_update_layers"] = _cos(puu_u, puu, uu).cpu()
        return out

    def after(self, ctx: StepContext) -> None:
        self._init(ctx)
        if self._uu is not None and self._uu[0] == ctx.step:
            uu = self._uu[1]
        else:
            u = ctx.update.double()
            uu = self._sums(u * u)
        self._uu = None
        self.path_length += math.sqrt(_f(uu.sum()))
        if self.per_layer:
            self.path_layers += uu.sqrt().cpu()
        self.prev_grad = _keep(self.prev_grad, ctx.grad)
        if ctx.weight_decay:
            self.prev_grad_wd = _keep(self.prev_grad_wd, ctx.grad + ctx.weight_decay * ctx.theta)
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


def _keep(buffer: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    """Copy `value` into a preallocated buffer (allocated on first use)."""
    if buffer is None or buffer.shape != value.shape:
        return value.detach().clone()
    return buffer.copy_(value)
