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
same point: the same numbers). On a fixed source (probe, heldout), a = 0 reuses the a = 1
losses of the previous step when the line ran there and theta_t is exactly that step's
theta_{t+1} (checked): the same forward on the same data, so the same numbers, and K - 1
forwards instead of K at consecutive steps (not under the "eval" BN policy, whose running
statistics move between steps; the reuse is a cache, not checkpointed state).
"""

from __future__ import annotations

import numpy as np
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
        # source -> (step t, theta_{t+1}, per-example losses at a = 1): the next a = 0
        self._ends: dict[str, tuple[int, torch.Tensor, torch.Tensor]] = {}

    def header(self) -> dict:
        return {"line_grid": self.grid.clone()}

    def observe(self, ctx: StepContext) -> dict:
        out: dict = {}
        for source in self.sources:
            per = self.per_example(ctx, source)
            curve = per.double().mean(dim=1)
            # The K-point analysis runs on the host in NumPy: one transfer, no kernel launches.
            host = curve.cpu()
            eps = 2.0 * paired_noise(per[self.i0], per[_argmin(host.numpy())])
            summary = curve_summary(self.grid, host, eps)
            out[f"line_{source}"] = curve
            out.update({f"line_{source}_{k}": summary[k] for k in CURVE_KEYS})
            out[f"line_{source}_eps"] = eps
        return out

    def per_example(self, ctx: StepContext, source: str) -> torch.Tensor:
        """Per-example losses (K, N) along the step on `source`."""
        ev = ctx.evaluator
        if source != "batch":
            start = self._known_start(ctx, source)
            chunks = ev.sources[source]
            if start is None:
                per = ev.line(ctx.theta, ctx.update, self.points, chunks, ctx.theta_next)
            else:
                rest = self.points[: self.i0] + self.points[self.i0 + 1 :]
                part = ev.line(ctx.theta, ctx.update, rest, chunks, ctx.theta_next)
                per = torch.cat([part[: self.i0], start.unsqueeze(0), part[self.i0 :]])
            if ev.points_are_pure:
                self._remember(ctx, source, per[self.i1])
            return per
        known = ctx.cache.get(BATCH_LOSSES_NEXT)
        if known is None:
            return ev.line(ctx.theta, ctx.update, self.points, ctx.batch, ctx.theta_next)
        rest = self.points[: self.i1] + self.points[self.i1 + 1 :]
        part = ev.line(ctx.theta, ctx.update, rest, ctx.batch, ctx.theta_next)
        return torch.cat([part[: self.i1], known.unsqueeze(0), part[self.i1 :]])


    def _known_start(self, ctx: StepContext, source: str) -> torch.Tensor | None:
        """The previous step's a = 1 losses, if they were measured at exactly theta_t."""
        end = self._ends.get(source)
        if end is None or end[0] != ctx.step - 1 or not ctx.evaluator.points_are_pure:
            return None
        return end[2] if torch.equal(end[1], ctx.theta) else None

    def _remember(self, ctx: StepContext, source: str, losses: torch.Tensor) -> None:
        old = self._ends.get(source)
        theta = old[1] if old is not None and old[1].shape == ctx.theta.shape else None
        theta = ctx.theta_next.clone() if theta is None else theta.copy_(ctx.theta_next)
        self._ends[source] = (ctx.step, theta, losses.clone())


def _argmin(curve: np.ndarray) -> int:
    """Index of the smallest finite value (0 when none is finite)."""
    return int(np.argmin(np.where(np.isfinite(curve), curve, np.inf)))
