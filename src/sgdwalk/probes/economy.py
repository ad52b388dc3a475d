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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sgdwalk.probes.base import Probe
from sgdwalk.probes.registry import register_probe

if TYPE_CHECKING:
    from sgdwalk.probes.context import StepContext

# torch, NumPy and the kernels are imported inside the methods that use them, so that
# registering this probe (which `import sgdwalk.config` does) imports no torch.


@dataclass(frozen=True)
class EconomySettings:
    """The economy probe's walk.* keys (its bracket is the line grid's: walk.line_min/max)."""

    economy_jvp: bool = False  # economy: also f'(1) by a jvp, for a cubic fit


@register_probe("economy", schedule="every:1", preset="economy", settings=EconomySettings,
                summary="floor and height from f(0), f'(0) and one forward at 1")
class Economy(Probe):
    """Floor and height of a quadratic (or cubic) model of the batch line.

    Args:
        schedule: step -> bool.
        lo, hi: bracket of step fractions for the floor (the line grid's ends).
        jvp: also measure f'(1) by forward-mode AD and fit the Hermite cubic.
    """

    sources = ("batch",)

    def __init__(self, schedule=None, lo: float = -0.25, hi: float = 1.25, jvp: bool = False):
        super().__init__(schedule)
        if not lo < hi:
            raise ValueError(f"Economy: expected lo < hi, got lo={lo}, hi={hi}")
        self.lo, self.hi, self.jvp = float(lo), float(hi), bool(jvp)

    @classmethod
    def from_config(cls, cfg, schedule) -> Economy:
        return cls(schedule, cfg.line_min, cfg.line_max, cfg.economy_jvp)

    def observe(self, ctx: StepContext) -> dict:
        from sgdwalk.functional.economy import cubic_floor, quadratic_floor

        ev = ctx.evaluator
        f1 = float(ctx.batch_losses_next().double().mean())
        if ev.reproduces_training_forward:
            f0 = ctx.loss
        else:  # model f from one function: the probing forward at both ends
            f0 = float(ev.losses(ctx.batch, ctx.theta).double().mean())
        df0 = ctx.grad_dot_update
        out = {"econ_f1": f1, "econ_df0": df0}
        if self.jvp:
            _, df1 = ev.directional_derivative(ctx.batch, ctx.theta_next, ctx.update)
            out["econ_df1"] = df1
            fit = cubic_floor(f0, df0, f1, df1, self.lo, self.hi)
        else:
            fit = quadratic_floor(f0, df0, f1, self.lo, self.hi)
        for key in ("floor_a", "floor_loss", "height", "height_end"):
            out[f"econ_{key}"] = fit[key]
        out["econ_curv"] = 2.0 * (f1 - f0 - df0)
        return out
