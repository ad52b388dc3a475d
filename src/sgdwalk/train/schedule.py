"""Learning-rate schedules as exact functions of the step: lr_t = optim.lr x factor(t).

A schedule keeps no state: the loop sets the lr of update t from t alone, so a resumed run
applies the same lr as an uninterrupted one, and nothing but the step is checkpointed. With
W warmup steps, T total steps, e = optim.lr_end_fraction (the final factor) and the post-warmup
progress p = (t - W) / (T - W):

    warmup    t < W: factor = (t + 1) / W         (the peak at t = W - 1, not zero at t = 0)
    constant  1
    step      gamma^k, k = #{milestones m : t >= round(m T)}   (milestones: fractions of T)
    cosine    e + (1 - e) (1 + cos(pi p)) / 2      (1 at t = W; e would be reached at t = T)
    wsd       1 for t < S = T - D (D = round(decay_fraction T)); then with q = (t - S) / D,
              e + (1 - e) shape(q), shape = 1 - q (linear) | (1 + cos(pi q)) / 2 (cosine) |
              1 - sqrt(q) (sqrt)

The last update (t = T - 1) of cosine and wsd keeps a little lr: e is the value the curve
reaches at T, after the run. constant with W = 0 is factor 1 at every step: the schedule
leaves the optimizer's lr untouched, bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sgdwalk.config import OptimConfig
from sgdwalk.errors import ConfigError


@dataclass(frozen=True)
class Schedule:
    """factor(t) of the module docstring for a run of `total` updates.

    Attributes:
        name: constant | step | cosine | wsd.
        total: T, the run's updates.
        warmup: W, the warmup steps (< T).
        end: e, the final factor of cosine and wsd.
        milestones: step: the steps where the factor is multiplied by gamma.
        gamma: step: the factor's multiplier at each milestone.
        decay_start: wsd: S = T - D, the first step of the decay.
        decay_shape: wsd: linear | cosine | sqrt.
    """

    name: str
    total: int
    warmup: int = 0
    end: float = 0.0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    decay_start: int = 0
    decay_shape: str = "linear"

    def factor(self, t: int) -> float:
        """The lr factor of update t (0-based)."""
        if t < self.warmup:
            return (t + 1) / self.warmup
        if self.name == "constant":
            return 1.0
        if self.name == "step":
            return self.gamma ** sum(t >= m for m in self.milestones)
        if self.name == "cosine":
            p = (t - self.warmup) / (self.total - self.warmup)
            return self.end + (1 - self.end) * (1 + math.cos(math.pi * p)) / 2
        if t < self.decay_start:  # wsd: the stable phase
            return 1.0
        q = (t - self.decay_start) / (self.total - self.decay_start)
        return self.end + (1 - self.end) * _SHAPES[self.decay_shape](q)

    @property
    def is_constant(self) -> bool:
        """Factor 1 at every step: the loop need not touch the optimizer's lr."""
        return self.name == "constant" and self.warmup == 0

    def phase(self, t: int) -> str:
        """warmup | stable | decay: where update t lies (cosine decays from W on; step and
        constant have no decay phase)."""
        if t < self.warmup:
            return "warmup"
        if self.name == "cosine" or (self.name == "wsd" and t >= self.decay_start):
            return "decay"
        return "stable"


_SHAPES = {
    "linear": lambda q: 1 - q,
    "cosine": lambda q: (1 + math.cos(math.pi * q)) / 2,
    "sqrt": lambda q: 1 - math.sqrt(q),
}


def make_schedule(cfg: OptimConfig, total_steps: int) -> Schedule:
    """The schedule of `cfg` (optim.schedule, warmup_steps or warmup_fraction, ...) over a
    run of `total_steps` updates; a warmup or decay that does not fit is a ConfigError."""
    warmup = cfg.warmup_steps
    if cfg.warmup_fraction:
        warmup = round(cfg.warmup_fraction * total_steps)
    if cfg.schedule == "constant" and warmup == 0:
        return Schedule("constant", total_steps)
    if warmup >= total_steps:
        raise ConfigError(f"optim.warmup_steps: expected fewer than the run's {total_steps} "
                          f"steps, got {warmup}")
    milestones = tuple(round(m * total_steps) for m in cfg.step_milestones)
    decay = round(cfg.decay_fraction * total_steps)
    if cfg.schedule == "wsd" and not 0 < decay <= total_steps - warmup:
        raise ConfigError(
            f"optim.decay_fraction: expected a decay of 1 to {total_steps - warmup} steps "
            f"(after the warmup of {warmup}) in a run of {total_steps}, got {decay} steps"
        )
    return Schedule(cfg.schedule, total_steps, warmup, cfg.lr_end_fraction, milestones,
                    cfg.step_gamma, total_steps - decay, cfg.decay_shape)
