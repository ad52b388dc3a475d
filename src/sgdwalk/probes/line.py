"""Line probe: the loss along the step, f_t(a) = L(theta_t + a u_t), on a grid of a.

For each source S ("batch": the step's own mini-batch; "probe": the fixed probe set;
"heldout": held-out data) it records the sampled curve and its summary (docs/metrics.md):

    line_S                 f_t(a_i) at each grid point (vector; the grid is `line_grid`)
    line_S_<key>           every key of `functional.curve_summary`: floor_a, floor_loss,
                           height, height_end, rel_height, interior, convex, quad_r2,
                           quad_curv, alpha, step_barrier, step_barrier_a, crossing
    line_S_eps             2 x paired_noise(l(0), l(a_min)): twice the standard error of the
                           per-example loss difference between a = 0 and the grid minimum

Points are evaluated by the `LossEvaluator` under its BatchNorm policy, at exactly theta_t
(a = 0) and exactly theta_{t+1} (a = 1). f_t(0) is always evaluated, never taken from the
training loss: eps needs its per-example losses, and the training forward had dropout on.
On the batch source, a = 1 reuses the economy probe's forward when it ran (same function,
same point: the same numbers).
"""

from __future__ import annotations

import torch

from sgdwalk.functional.curve import CURVE_KEYS, curve_summary, make_grid, paired_noise
from sgdwalk.probes.base import BATCH_LOSSES_NEXT, Probe, StepContext

LINE_SOURCES = ("batch", "probe", "heldout")


class Line(Probe):
    """The sampled line curve of every scheduled step, on each source.

    Args:
        schedule: step -> bool.
        grid: (K,) sorted step fractions containing 0 and 1 (default: make_grid(-0.25,
            1.25, 13)).
        sources: names in LINE_SOURCES, evaluated in this order.
    """

    name = "line"

    def __init__(self, schedule=None, grid=None, sources=("probe",)):
        super().__init__(schedule)
        grid = make_grid(-0.25, 1.25, 13) if grid is None else grid
        self.grid = torch.as_tensor(grid, dtype=torch.float64).reshape(-1).clone()
        points = self.grid.tolist()
        if 0.0 not in points or 1.0 not in points or points != sorted(set(points)):
            raise ValueError(f"Line: expected a sorted grid containing 0 and 1, got {points}")
        for source in sources:
            if source not in LINE_SOURCES:
                raise ValueError(f"Line: expected sources among {LINE_SOURCES}, got {source!r}")
        self.sources = tuple(sources)
        self.points = points
        self.i0, self.i1 = points.index(0.0), points.index(1.0)

    def header(self) -> dict:
        return {"line_grid": self.grid.clone()}

    def observe(self, ctx: StepContext) -> dict:
        out: dict = {}
        for source in self.sources:
            per = self.per_example(ctx, source)
            curve = per.double().mean(dim=1)
            eps = 2.0 * paired_noise(per[self.i0], per[_argmin(curve)])
            summary = curve_summary(self.grid, curve, eps)
            out[f"line_{source}"] = curve
            out.update({f"line_{source}_{k}": summary[k] for k in CURVE_KEYS})
            out[f"line_{source}_eps"] = eps
        return out

    def per_example(self, ctx: StepContext, source: str) -> torch.Tensor:
        """Per-example losses (K, N) along the step on `source`."""
        ev = ctx.evaluator
        if source != "batch":
            return ev.line(ctx.theta, ctx.update, self.points, ev.sources[source], ctx.theta_next)
        known = ctx.cache.get(BATCH_LOSSES_NEXT)
        if known is None:
            return ev.line(ctx.theta, ctx.update, self.points, ctx.batch, ctx.theta_next)
        rest = self.points[: self.i1] + self.points[self.i1 + 1 :]
        part = ev.line(ctx.theta, ctx.update, rest, ctx.batch, ctx.theta_next)
        return torch.cat([part[: self.i1], known.unsqueeze(0), part[self.i1 :]])


def _argmin(curve: torch.Tensor) -> int:
    """Index of the smallest finite value (0 when none is finite)."""
    finite = torch.where(torch.isfinite(curve), curve, torch.full_like(curve, float("inf")))
    return int(torch.argmin(finite))
