"""Cost-ordered presets: which probe families run, and on which default schedule.

    preset     adds                                          rough cost per step
    off        nothing (loss and lr only)                    0
    cheap      trajectory: cosines, norms, distance, path    vector ops, no forward
    economy    + floor/height from one forward at theta_t+1  ~0.3 SGD steps
    line       + the full line curve on the probe set        K probe-set forwards
    curvature  + u^T H u by one HVP, Lanczos sharpness       ~3 steps (+ Lanczos sparsely)
    full       + valley-floor barriers, gradient noise       segments x points forwards

A WalkConfig field set to a schedule string overrides its family's default, "off"
switches it off, and a family the preset leaves out can be switched on the same way.
"""

from __future__ import annotations

from sgdwalk.config import WalkConfig
from sgdwalk.probes.schedule import Never, parse_schedule

PRESETS = ("off", "cheap", "economy", "line", "curvature", "full")

# family -> (first preset that includes it, its default schedule there)
DEFAULTS = {
    "trajectory": ("cheap", "every:1"),
    "economy": ("economy", "every:1"),
    "line": ("line", "every:1"),
    "curvature": ("curvature", "every:1"),
    "sharpness": ("curvature", "every:100"),
    "barrier": ("full", "every:1"),
    "noise": ("full", "every:10"),
}


def family_schedules(cfg: WalkConfig) -> dict[str, str]:
    """{family: schedule string} after applying the preset and the explicit fields."""
    level = PRESETS.index(cfg.preset)
    out = {}
    for family, (first, default) in DEFAULTS.items():
        spec = getattr(cfg, family)
        if spec is None:
            spec = default if level >= PRESETS.index(first) else "off"
        out[family] = spec
    return out


def build_probes(spec, steps_per_epoch: int = 1) -> list:
    """Probe instances, in dependency order, for a preset name or a WalkConfig."""
    cfg = WalkConfig(preset=spec) if isinstance(spec, str) else spec
    schedules = {
        family: parse_schedule(text, steps_per_epoch, where=f"walk.{family}")
        for family, text in family_schedules(cfg).items()
    }
    probes = []
    for family, factory in _factories().items():
        schedule = schedules[family]
        if not isinstance(schedule, Never):
            probes.append(factory(cfg, schedule))
    return probes


def _factories():
    from sgdwalk.probes.trajectory import Trajectory

    return {
        "trajectory": lambda cfg, s: Trajectory(s),
    }
