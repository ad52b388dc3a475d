"""Line probe: the loss along the step, f_t(a) = L(theta_t + a u_t), on a grid of a.

For each source S ("batch": the step's own mini-batch; "probe": the fixed probe set;
"heldout": held-out data) it records the sampled curve and its summary (docs/metrics.md):

    line_S                 f_t(a_i) at each grid point (vector; the grid is `line_grid`)
    line_S_<key>           every key of `functional.curve_summary`: floor_a, floor_loss,
                           height, height_end, rel_height, interior, convex, quad_r2,
                           quad_curv, alpha, step_barrier, step_barrier_a, crossing,
                           censored
    line_S_eps             2 x paired_noise(l(0), l(a_min), N): twice the standard error of
                           the per-example loss difference between a = 0 and the grid
                           minimum, with the finite-population correction for N examples
    line_population        N, the examples the training loss averages over (step -1; only
                           when given): the probe set and a mini-batch are samples of them

Points are evaluated by the `LossEvaluator` under its BatchNorm policy, at exactly theta_t
(a = 0) and exactly theta_{t+1} (a = 1). f_t(0) is always evaluated, never taken from the
training loss: eps needs its per-example losses, and the training forward had dropout on.
On the batch source, a = 1 is the step context's shared forward at theta_{t+1}
(`ctx.batch_losses_next()`, the economy fit's f(1) too: measured once, whichever asks
first). On a fixed source (probe, heldout), a = 0 reuses the a = 1 losses of the previous
step when the line ran there and theta_t is exactly that step's theta_{t+1} (checked): the
same forward on the same data, so the same numbers, and K - 1 forwards instead of K at
consecutive steps (not under the "eval" BN policy, whose running statistics move between
steps; the reuse is a cache, not checkpointed state).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sgdwalk.probes.base import Probe
from sgdwalk.probes.checks import expect, expect_float32
from sgdwalk.probes.registry import register_probe

if TYPE_CHECKING:
    import numpy as np
    import torch

    from sgdwalk.probes.context import StepContext

# torch, NumPy and the kernels are imported inside the methods that use them, so that
# registering this probe (which `import sgdwalk.config` does) imports no torch.


LINE_SOURCES = ("batch", "probe", "heldout")


@dataclass(frozen=True)
class LineSettings:
    """The line probe's walk.* keys (the economy fit and the barriers read them too)."""

    line_min: float = -0.25  # first grid point (fraction of the step)
    line_max: float = 1.25  # last grid point
    line_points: int = 13  # grid points, evenly spaced (13 gives spacing 0.125)
    line_sources: tuple[str, ...] = ("probe",)  # batch | probe | heldout
    # examples the training loss averages over, for eps's finite-population correction;
    # None: the trainer fills in its training split's size (a Walk in a user's loop: none)
    line_population: int | None = None

    def __post_init__(self):
        for src in self.line_sources:
            expect(src in LINE_SOURCES, "line_sources", "items of batch, probe, heldout",
                   repr(src))
        expect_float32(self, "line_min", "line_max")
        expect(self.line_min < self.line_max, "line_min", f"< line_max ({self.line_max})",
               self.line_min)
        expect(self.line_points >= 3, "line_points", ">= 3", self.line_points)
        expect(self.line_population is None or self.line_population >= 1, "line_population",
               ">= 1 or none", self.line_population)

    def when_on(self) -> None:
        """What only matters (and only conflicts) when the line probe runs."""
        expect(bool(self.line_sources), "line_sources", "at least one source", "none")


@register_probe("line", schedule="every:1", preset="line", settings=LineSettings,
                summary="the full line curve on the grid")
class Line(Probe):
    """The sampled line curve of every scheduled step, on each source.

    Args:
        schedule: step -> bool.
        grid: (K,) sorted step fractions containing 0 and 1 (default: make_grid(-0.25,
            1.25, 13)).
        sources: names in LINE_SOURCES, evaluated in this order.
        population: examples the training loss averages over (the training split), of
            which the probe set and a mini-batch are samples drawn without replacement:
            eps then has the finite-population correction (0 sampling noise when the
            probe set is all of them). None: unknown, no correction (a full batch, which
            is the whole objective, still has none).
    """

    def __init__(self, schedule=None, grid=None, sources=("probe",), population=None):
        import torch

        from sgdwalk.functional.curve import make_grid

        super().__init__(schedule)
        if population is not None and not (int(population) == population and population > 0):
            raise ValueError(f"Line: expected a positive population or None, got {population}")
        self.population = population
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

    @classmethod
    def from_config(cls, cfg, schedule) -> Line:
        from sgdwalk.functional.curve import make_grid

        return cls(schedule, make_grid(cfg.line_min, cfg.line_max, cfg.line_points),
                   cfg.line_sources, cfg.line_population)

    def header(self) -> dict:
        known = {} if self.population is None else {"line_population": float(self.population)}
        return {"line_grid": self.grid.clone(), **known}

    def observe(self, ctx: StepContext) -> dict:
        from sgdwalk.functional.curve import CURVE_KEYS, curve_summary, paired_noise

        out: dict = {}
        for source in self.sources:
            per = self.per_example(ctx, source)
            curve = per.double().mean(dim=1)
            # The K-point analysis runs on the host in NumPy: one transfer, no kernel launches.
            host = curve.cpu()
            eps = 2.0 * paired_noise(per[self.i0], per[_argmin(host.numpy())],
                                     self._population(ctx, source, per.shape[1]))
            summary = curve_summary(self.grid, host, eps)
            out[f"line_{source}"] = curve
            out.update({f"line_{source}_{k}": summary[k] for k in CURVE_KEYS})
            out[f"line_{source}_eps"] = eps
        return out

    def per_example(self, ctx: StepContext, source: str) -> torch.Tensor:
        """Per-example losses (K, N) along the step on `source`."""
        import torch

        ev = ctx.evaluator
        if source != "batch":
            start = self._known_start(ctx, source)
            if start is None:
                per = ev.line(ctx.theta, ctx.update, self.points, source, ctx.theta_next)
            else:
                rest = self.points[: self.i0] + self.points[self.i0 + 1 :]
                part = ev.line(ctx.theta, ctx.update, rest, source, ctx.theta_next)
                per = torch.cat([part[: self.i0], start.unsqueeze(0), part[self.i0 :]])
            if ev.points_are_pure:
                self._remember(ctx, source, per[self.i1])
            return per
        # a = 1 on the batch is the context's shared forward (the economy fit's f(1))
        rest = self.points[: self.i1] + self.points[self.i1 + 1 :]
        part = ev.line(ctx.theta, ctx.update, rest, ctx.batch, ctx.theta_next)
        known = ctx.batch_losses_next()
        return torch.cat([part[: self.i1], known.unsqueeze(0), part[self.i1 :]])

    def _population(self, ctx: StepContext, source: str, n: int) -> int | None:
        """N of eps's correction for n examples of `source`: held-out data sample the data
        distribution (no correction); a full batch is the whole objective (N = n)."""
        if source == "heldout":
            return None
        if source == "batch" and ctx.full_batch:
            return n
        return self.population

    def _known_start(self, ctx: StepContext, source: str) -> torch.Tensor | None:
        """The previous step's a = 1 losses, if they were measured at exactly theta_t."""
        end = self._ends.get(source)
        if end is None or end[0] != ctx.step - 1 or not ctx.evaluator.points_are_pure:
            return None
        return end[2] if ctx.evaluator.same_point(end[1], ctx.theta) else None

    def _remember(self, ctx: StepContext, source: str, losses: torch.Tensor) -> None:
        old = self._ends.get(source)
        theta = old[1] if old is not None and old[1].shape == ctx.theta.shape else None
        theta = ctx.theta_next.clone() if theta is None else theta.copy_(ctx.theta_next)
        self._ends[source] = (ctx.step, theta, losses.clone())


def _argmin(curve: np.ndarray) -> int:
    """Index of the smallest finite value (0 when none is finite)."""
    import numpy as np

    return int(np.argmin(np.where(np.isfinite(curve), curve, np.inf)))
