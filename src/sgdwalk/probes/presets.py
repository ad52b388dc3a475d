"""Cost-ordered presets: which probe families run, and on which default schedule.

    preset     adds                                          step / plain SGD step
    off        nothing (loss and lr only)                    1.0
    cheap      trajectory: cosines, norms, distance, path    1.1 - 2.2 (vector ops)
    economy    + floor/height from one forward at theta_t+1  1.7 - 3.1 (+1 batch forward)
    line       + the full line curve on the probe set        14 - 36 (K probe-set forwards)
    curvature  + u^T H u by one HVP, Lanczos sharpness       19 - 41
    full       + valley-floor barriers every 10 steps        + 2 x len(ks) x points
               + gradient noise every 10 steps               probe-set forwards each

Measured by benchmarks/probe_cost.py (CPU, 1 thread, torch 2.13; 512-example probe set) for
a BN MLP on digits at batch 32 and 128 (the high ends are batch 32, whose SGD step is
0.3 ms) and a width-0.25 BN VGG-11 at batch 100 (the high ends of line and up). The line
probe itself costs 1.00x (VGG) to 1.23x (MLP) the K plain forwards it needs.

A WalkConfig field set to a schedule string overrides its family's default, "off"
switches it off, and a family the preset leaves out can be switched on the same way.
"""

from __future__ import annotations

from sgdwalk.config import WalkConfig
from sgdwalk.errors import ConfigError
from sgdwalk.probes.schedule import Never, parse_schedule

PRESETS = ("off", "cheap", "economy", "line", "curvature", "full")

# family -> (first preset that includes it, its default schedule there)
DEFAULTS = {
    "trajectory": ("cheap", "every:1"),
    "economy": ("economy", "every:1"),
    "line": ("line", "every:1"),
    "curvature": ("curvature", "every:1"),
    "sharpness": ("curvature", "every:100"),
    "barrier": ("full", "every:10"),  # ~150 probe-set forwards each time: sparse
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
    _check(cfg, {f for f, s in schedules.items() if not isinstance(s, Never)})
    probes = []
    for family, factory in _factories().items():
        schedule = schedules[family]
        if not isinstance(schedule, Never):
            probes.append(factory(cfg, schedule))
    return probes


def _check(cfg: WalkConfig, on: set[str]) -> None:
    """Settings that only matter (and only conflict) when their probe runs."""
    if "line" in on and not cfg.line_sources:
        raise ConfigError("walk.line_sources: expected at least one source, got none")
    if "barrier" in on and "line" not in on:
        raise ConfigError(
            "walk.barrier: expected the line probe on (barriers join its floor points), "
            f"got walk.line={family_schedules(cfg)['line']!r}"
        )
    if "barrier" in on and cfg.barrier_points < 3:
        raise ConfigError(f"walk.barrier_points: expected >= 3, got {cfg.barrier_points}")
    if "sharpness" in on and cfg.sharpness_k > cfg.sharpness_max_iter:
        raise ConfigError(
            f"walk.sharpness_k: expected at most sharpness_max_iter ({cfg.sharpness_max_iter}),"
            f" got {cfg.sharpness_k}"
        )


def _factories():
    """{family: (cfg, schedule) -> probe}, in dependency order: the economy forward is
    shared with the batch line, the barrier reads the line's floors."""
    from sgdwalk.functional.curve import make_grid
    from sgdwalk.probes.barrier import Barrier
    from sgdwalk.probes.curvature import Curvature
    from sgdwalk.probes.economy import Economy
    from sgdwalk.probes.line import Line
    from sgdwalk.probes.noise import GradientNoise
    from sgdwalk.probes.sharpness import Sharpness
    from sgdwalk.probes.trajectory import Trajectory

    return {
        "trajectory": lambda cfg, s: Trajectory(s),
        "economy": lambda cfg, s: Economy(s, cfg.line_min, cfg.line_max, cfg.economy_jvp),
        "line": lambda cfg, s: Line(
            s, make_grid(cfg.line_min, cfg.line_max, cfg.line_points), cfg.line_sources
        ),
        "curvature": lambda cfg, s: Curvature(s),
        "sharpness": lambda cfg, s: Sharpness(
            s, cfg.sharpness_k, cfg.sharpness_tol, cfg.sharpness_max_iter
        ),
        "barrier": lambda cfg, s: Barrier(
            s, cfg.line_sources[0], cfg.barrier_ks, cfg.barrier_points
        ),
        "noise": lambda cfg, s: GradientNoise(s, cfg.noise_microbatches),
    }
