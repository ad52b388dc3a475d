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

import torch

from sgdwalk.functional.vector import cosine, segment_cosines, segment_norms
from sgdwalk.probes.base import Probe, StepContext


class Trajectory(Probe):
    name = "trajectory"
    tracks_history = True  # path length and the previous step's vectors need every step

    def __init__(self, schedule=None, per_layer: bool = True):
        super().__init__(schedule)
        self.per_layer = per_layer
        self.theta0: torch.Tensor | None = None
        self.prev_grad: torch.Tensor | None = None
        self.prev_grad_wd: torch.Tensor | None = None
        self.prev_update: torch.Tensor | None = None
        self.path_length = 0.0
        self.path_layers: torch.Tensor | None = None

    def _init(self, ctx: StepContext) -> None:
        if self.theta0 is None:
            self.theta0 = ctx.theta.clone()
        if self.path_layers is None:
            self.path_layers = torch.zeros(len(ctx.layout.layers), dtype=torch.float64)

    def observe(self, ctx: StepContext) -> dict:
        self._init(ctx)
        bounds = ctx.layout.layer_bounds
        g, u = ctx.grad, ctx.update
        gwd = g + ctx.weight_decay * ctx.theta if ctx.weight_decay else g
        delta = ctx.theta_next - self.theta0
        step_norm = float(torch.linalg.vector_norm(u))
        path = self.path_length + step_norm
        dist = float(torch.linalg.vector_norm(delta))
        nan = float("nan")
        out = {
            "grad_norm": float(torch.linalg.vector_norm(g)),
            "update_norm": step_norm,
            "cos_grad": cosine(self.prev_grad, g) if self.prev_grad is not None else nan,
            "cos_grad_wd": cosine(self.prev_grad_wd, gwd) if self.prev_grad_wd is not None else nan,
            "cos_update": cosine(self.prev_update, u) if self.prev_update is not None else nan,
            "cos_grad_update": cosine(g, u),
            "dist_init": dist,
            "path_length": path,
            "dist_path_ratio": dist / path if path > 0 else nan,
        }
        if self.per_layer:
            u_layers = segment_norms(u, bounds).double()
            path_layers = self.path_layers + u_layers
            dist_layers = segment_norms(delta, bounds).double()
            out |= {
                "grad_norm_layers": segment_norms(g, bounds),
                "update_norm_layers": u_layers,
                "dist_init_layers": dist_layers,
                "path_length_layers": path_layers,
                "dist_path_ratio_layers": dist_layers / path_layers,
                "cos_grad_update_layers": segment_cosines(g, u, bounds),
            }
            if self.prev_grad is not None:
                out["cos_grad_layers"] = segment_cosines(self.prev_grad, g, bounds)
                out["cos_update_layers"] = segment_cosines(self.prev_update, u, bounds)
        return out

    def after(self, ctx: StepContext) -> None:
        self._init(ctx)
        u = ctx.update
        self.path_length += float(torch.linalg.vector_norm(u))
        if self.per_layer:
            self.path_layers += segment_norms(u, ctx.layout.layer_bounds).double()
        self.prev_grad = _keep(self.prev_grad, ctx.grad)
        if ctx.weight_decay:
            self.prev_grad_wd = _keep(self.prev_grad_wd, ctx.grad + ctx.weight_decay * ctx.theta)
        else:
            self.prev_grad_wd = self.prev_grad
        self.prev_update = _keep(self.prev_update, u)

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
