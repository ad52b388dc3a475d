"""Economy line: the valley floor and height of a step from one extra forward.

The line curve of the step on its own batch, f(a) = L_B(theta_t + a u_t), is modelled from

    f(0)  = the training loss of the step (free; evaluated again when the probing forward
            is not the training forward: dropout, or a BN policy other than "batch")
    f'(0) = <g_t, u_t>                     (free)
    f(1)  = one no-grad forward at theta_{t+1} on the step's batch (shared with other probes)
    f'(1) = <grad L_B(theta_{t+1}), u_t>   (one `jvp`, only with `jvp=True`)

by `functional.quadratic_floor` (or `cubic_floor` with f'(1)), minimised over the bracket
[lo, hi] of the line grid. Stored names (docs/metrics.md): econ_f1, econ_df0, econ_df1,
econ_floor_a, econ_floor_loss, econ_height, econ_height_end, econ_curv, where econ_curv is
the quadratic model's second derivative 2 (f(1) - f(0) - f'(0)) in both modes.

Reach (walk.economy_reach): "step" fits through the step's end as above. "peak" moves the
second point to a_2 = lr_peak / lr_t (at least 1), the length a step at the schedule's peak
lr would have along the same direction: f(a_2) by one no-grad forward at theta_t + a_2 u_t
(at a_2 = 1 the shared forward at theta_{t+1}, so the values are those of "step" bit for
bit) and the bracket [lo a_2, hi a_2]. The fit is made in units of a_2 (where it is the
step's fit) and reported in units of the step: econ_floor_a up to hi a_2, econ_df1 and
econ_curv per step; econ_f1 is f(a_2), econ_reach is a_2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sgdwalk.probes.base import Probe
from sgdwalk.probes.checks import expect
from sgdwalk.probes.registry import register_probe

if TYPE_CHECKING:
    from sgdwalk.probes.context import StepContext

# torch, NumPy and the kernels are imported inside the methods that use them, so that
# registering this probe (which `import sgdwalk.config` does) imports no torch.

REACHES = ("step", "peak")  # walk.economy_reach


@dataclass(frozen=True)
class EconomySettings:
    """The economy probe's walk.* keys (its bracket is the line grid's: walk.line_min/max)."""

    economy_jvp: bool = False  # economy: also f'(1) by a jvp, for a cubic fit
    # economy: the fit's second point: "step" (theta_{t+1}) or "peak" (the step's direction
    # at the length of a peak-lr step, a_2 = lr_peak / lr_t, and the bracket times a_2)
    economy_reach: str = "step"
    # economy_reach = "peak": the schedule's peak lr; None: the trainer fills in optim.lr
    # (a Walk in a user's loop: set it)
    economy_lr_peak: float | None = None

    def __post_init__(self):
        expect(self.economy_reach in REACHES, "economy_reach", " or ".join(REACHES),
               repr(self.economy_reach))
        expect(self.economy_lr_peak is None or (math.isfinite(self.economy_lr_peak)
                                                and self.economy_lr_peak > 0),
               "economy_lr_peak", "a finite lr > 0 or none", self.economy_lr_peak)

    def when_on(self) -> None:
        """What only matters when the economy probe runs: "peak" needs the peak lr."""
        expect(self.economy_reach != "peak" or self.economy_lr_peak is not None,
               "economy_lr_peak", "the schedule's peak lr with economy_reach = 'peak' (a run "
               "fills in optim.lr; a Walk in a user's loop sets it)", "none")


@register_probe("economy", schedule="every:1", preset="economy", settings=EconomySettings,
                summary="floor and height from f(0), f'(0) and one forward at 1")
class Economy(Probe):
    """Floor and height of a quadratic (or cubic) model of the batch line.

    Args:
        schedule: step -> bool.
        lo, hi: bracket of step fractions for the floor (the line grid's ends).
        jvp: also measure f'(1) by forward-mode AD and fit the Hermite cubic.
        lr_peak: None fits through theta_{t+1} ("step"); a peak lr fits through
            theta_t + a_2 u_t with a_2 = max(1, lr_peak / lr_t) over [lo a_2, hi a_2] ("peak").
    """

    sources = ("batch",)

    def __init__(self, schedule=None, lo: float = -0.25, hi: float = 1.25, jvp: bool = False,
                 lr_peak: float | None = None):
        super().__init__(schedule)
        if not lo < hi:
            raise ValueError(f"Economy: expected lo < hi, got lo={lo}, hi={hi}")
        if lr_peak is not None and not (math.isfinite(lr_peak) and lr_peak > 0):
            raise ValueError(f"Economy: expected a finite lr_peak > 0 or None, got {lr_peak}")
        self.lo, self.hi, self.jvp = float(lo), float(hi), bool(jvp)
        self.lr_peak = None if lr_peak is None else float(lr_peak)

    @classmethod
    def from_config(cls, cfg, schedule) -> Economy:
        peak = cfg.economy_lr_peak if cfg.economy_reach == "peak" else None
        return cls(schedule, cfg.line_min, cfg.line_max, cfg.economy_jvp, peak)

    def reach(self, lr: float) -> float:
        """a_2, the fit's second point in steps: 1 ("step"), else max(1, lr_peak / lr); NaN
        when lr is not a finite positive number (no length to scale)."""
        if self.lr_peak is None:
            return 1.0
        if not (math.isfinite(lr) and lr > 0):
            return math.nan
        return max(1.0, self.lr_peak / lr)

    def observe(self, ctx: StepContext) -> dict:
        from sgdwalk.functional.economy import cubic_floor, quadratic_floor

        ev = ctx.evaluator
        a2 = self.reach(ctx.lr)
        if a2 == 1.0:
            f1 = float(ctx.batch_losses_next().double().mean())
        elif math.isfinite(a2):
            f1 = float(ev.line(ctx.theta, ctx.update, [a2], ctx.batch)[0].double().mean())
        else:
            f1 = math.nan
        if ev.reproduces_training_forward:
            f0 = ctx.loss
        else:  # model f from one function: the probing forward at both ends
            f0 = float(ev.losses(ctx.batch, ctx.theta).double().mean())
        df0 = ctx.grad_dot_update
        out = {"econ_f1": f1, "econ_df0": df0}
        # the fit in units of a2 (s = a / a2: slopes times a2), reported in units of the step
        if self.jvp:
            df1 = math.nan
            if math.isfinite(a2):
                end = ctx.theta_next if a2 == 1.0 else ctx.theta.add(ctx.update, alpha=a2)
                _, df1 = ev.directional_derivative(ctx.batch, end, ctx.update)
            out["econ_df1"] = df1
            fit = cubic_floor(f0, a2 * df0, f1, a2 * df1, self.lo, self.hi)
        else:
            fit = quadratic_floor(f0, a2 * df0, f1, self.lo, self.hi)
        out["econ_floor_a"] = fit["floor_a"] * a2
        for key in ("floor_loss", "height", "height_end"):
            out[f"econ_{key}"] = fit[key]
        out["econ_curv"] = 2.0 * (f1 - f0 - a2 * df0) / (a2 * a2)
        if self.lr_peak is not None:
            out["econ_reach"] = a2
        return out
