"""Barrier probe: barriers on the valley floor and on the iterate path (claims C6, C7).

The floor point of step s is theta_s + a*_s u_s, with a*_s the line probe's refined floor on
its first source (`line_<src>_floor_a`); steps where the line probe did not run have none.
A ring buffer keeps the floor points and the iterates of the last K = max(ks) steps
(2 K P numbers; part of the checkpointed state).

At a step t where the line probe ran, for each gap k:

    barrier_floor_k{k}       max_b L(floor_{t-k} + b (floor_t - floor_{t-k})) - max(ends),
                             b on linspace(0, 1, points), when step t-k had a floor point
    barrier_floor_k{k}_pos   the b of that maximum
    barrier_iter_k{k}        the same on the iterate segment theta_{t-k} -> theta_t (t >= k)
    barrier_iter_k{k}_pos
    floor_change             F_t - F_{t-1} (line floor losses), when step t-1 had one

L is the mean loss on the line probe's first source, by the evaluator (same BN policy).
A segment's end losses are measured once per point and reused by every segment that ends
there (on the "batch" source, whose data changes every step, they are measured again).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sgdwalk.probes.base import Probe
from sgdwalk.probes.checks import expect
from sgdwalk.probes.registry import register_probe

if TYPE_CHECKING:
    import torch

    from sgdwalk.probes.context import StepContext

# torch, NumPy and the kernels are imported inside the methods that use them, so that
# registering this probe (which `import sgdwalk.config` does) imports no torch.


@dataclass(frozen=True)
class BarrierSettings:
    """The barrier probe's walk.* keys (its source is the line probe's first)."""

    barrier_ks: tuple[int, ...] = (1, 2, 5, 10)  # step gaps k of the segments t -> t+k
    barrier_points: int = 9  # points along each segment

    def __post_init__(self):
        expect(bool(self.barrier_ks) and all(k > 0 for k in self.barrier_ks), "barrier_ks",
               "one or more positive gaps", list(self.barrier_ks))
        expect(self.barrier_points > 0, "barrier_points", "an integer > 0", self.barrier_points)

    def when_on(self) -> None:
        """What only matters (and only conflicts) when the barrier probe runs."""
        expect(self.barrier_points >= 3, "barrier_points", ">= 3", self.barrier_points)


# ~150 probe-set forwards each time: sparse
@register_probe("barrier", schedule="every:10", preset="full", settings=BarrierSettings,
                requires=("line",),
                summary="barriers on the valley floor and on the iterate path")
class Barrier(Probe):
    """Segment barriers between floor points (and iterates) k steps apart.

    Args:
        schedule: step -> bool.
        source: the line source whose floor points are used (the line probe's first).
        ks: gaps k >= 1.
        points: points per segment, both ends included (>= 3).
    """

    tracks_history = True  # the ring buffer needs every step's iterate and floor

    def __init__(self, schedule=None, source: str = "probe", ks=(1, 2, 5, 10), points: int = 9):
        super().__init__(schedule)
        import torch

        ks = tuple(sorted({int(k) for k in ks}))
        if not ks or ks[0] < 1 or points < 3:
            raise ValueError(f"Barrier: expected gaps >= 1 and points >= 3, got {ks}, {points}")
        self.source = source
        self.sources = (source,)
        self.ks = ks
        self.K = ks[-1]
        self.positions = torch.linspace(0.0, 1.0, points, dtype=torch.float64)
        self._b = self.positions.tolist()
        # ring buffers, slot s % K; *_step holds the step stored in a slot (-1: none)
        self.floors: torch.Tensor | None = None  # (K, P)
        self.iterates: torch.Tensor | None = None  # (K, P)
        self.floor_step = [-1] * self.K
        self.iter_step = [-1] * self.K
        self.floor_end = [math.nan] * self.K  # measured L at the floor point (NaN: not yet)
        self.iter_end = [math.nan] * self.K
        self.last_floor: tuple[int, float] | None = None  # (s, F_s) of the newest floor
        self._now: tuple[int, float, float] | None = None  # (t, L(floor_t), L(theta_t))
        self._work: torch.Tensor | None = None  # floor_t while step t is observed

    @classmethod
    def from_config(cls, cfg, schedule) -> Barrier:
        return cls(schedule, cfg.line_sources[0], cfg.barrier_ks, cfg.barrier_points)

    # -- the floor point of this step ------------------------------------------------
    def _floor_a(self, ctx: StepContext) -> float:
        a = ctx.results.get(f"line_{self.source}_floor_a", math.nan)
        return float(a) if a is not None else math.nan

    def _allocate(self, theta: torch.Tensor) -> None:
        if self.floors is None:
            self.floors = theta.new_zeros(self.K, theta.numel())
            self.iterates = theta.new_zeros(self.K, theta.numel())
        if self._work is None:
            self._work = theta.new_empty(theta.shape)

    def _mean_losses(self, ctx: StepContext, start, stop, positions) -> torch.Tensor:
        per = ctx.evaluator.segment(start, stop, positions, ctx.data(self.source))
        return per.double().mean(dim=1)

    def _end(self, ctx: StepContext, point: torch.Tensor) -> float:
        return float(self._mean_losses(ctx, point, point, [0.0])[0])

    # -- probe interface ---------------------------------------------------------------
    def observe(self, ctx: StepContext) -> dict:
        import torch

        a = self._floor_a(ctx)
        if not math.isfinite(a):
            return {}
        self._allocate(ctx.theta)
        t = ctx.step
        floor_t = torch.add(ctx.theta, ctx.update, alpha=a, out=self._work)
        here = {"floor": self._end(ctx, floor_t), "iter": self._end(ctx, ctx.theta)}
        self._now = (t, here["floor"], here["iter"])
        out: dict = {}
        for k in self.ks:
            s, slot = t - k, (t - k) % self.K
            if s < 0:
                continue
            if self.floor_step[slot] == s:
                out |= self._segment(ctx, "floor", k, slot, floor_t, here["floor"])
            if self.iter_step[slot] == s:
                out |= self._segment(ctx, "iter", k, slot, ctx.theta, here["iter"])
        F = ctx.results.get(f"line_{self.source}_floor_loss", math.nan)
        if self.last_floor is not None and self.last_floor[0] == t - 1:
            out["floor_change"] = float(F) - self.last_floor[1]
        return out

    def _segment(self, ctx, path: str, k: int, slot: int, end: torch.Tensor, end_loss: float):
        import torch

        from sgdwalk.functional.barrier import segment_barrier

        ring, ends = (
            (self.floors, self.floor_end) if path == "floor" else (self.iterates, self.iter_end)
        )
        start = ring[slot]
        if self.source == "batch":  # a new batch every step: earlier ends were other data
            ends[slot] = math.nan
        if not math.isfinite(ends[slot]):
            ends[slot] = self._end(ctx, start)
        values = torch.empty(len(self._b), dtype=torch.float64)
        values[0], values[-1] = ends[slot], end_loss
        values[1:-1] = self._mean_losses(ctx, start, end, self._b[1:-1])
        height, pos = segment_barrier(values, self.positions)
        return {f"barrier_{path}_k{k}": height, f"barrier_{path}_k{k}_pos": pos}

    def after(self, ctx: StepContext) -> None:
        import torch

        self._allocate(ctx.theta)
        t, slot = ctx.step, ctx.step % self.K
        measured = self._now if self._now is not None and self._now[0] == t else None
        self._now = None
        self.iterates[slot].copy_(ctx.theta)
        self.iter_step[slot] = t
        self.iter_end[slot] = measured[2] if measured else math.nan
        a = self._floor_a(ctx)
        if math.isfinite(a):
            torch.add(ctx.theta, ctx.update, alpha=a, out=self.floors[slot])
            self.floor_step[slot] = t
            self.floor_end[slot] = measured[1] if measured else math.nan
            F = ctx.results.get(f"line_{self.source}_floor_loss", math.nan)
            self.last_floor = (t, float(F))
        else:
            self.floor_step[slot] = -1
            self.floor_end[slot] = math.nan

    def state_dict(self) -> dict:
        return {
            "floors": self.floors,
            "iterates": self.iterates,
            "floor_step": list(self.floor_step),
            "iter_step": list(self.iter_step),
            "floor_end": list(self.floor_end),
            "iter_end": list(self.iter_end),
            "last_floor": self.last_floor,
        }

    def load_state_dict(self, state: dict) -> None:
        self.floors, self.iterates = state["floors"], state["iterates"]
        self.floor_step, self.iter_step = list(state["floor_step"]), list(state["iter_step"])
        self.floor_end, self.iter_end = list(state["floor_end"]), list(state["iter_end"])
        self.last_floor = state["last_floor"]
        self._now = None
