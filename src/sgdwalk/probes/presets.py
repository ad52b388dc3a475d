"""Presets: which registered probes run, and on which default schedule.

Each probe registers the cheapest preset that runs it and its schedule there
(`sgdwalk.probes.registry`); a preset runs every probe registered at its level or below:

    preset     adds (the built-in probes)
    off        nothing (loss and lr only)
    cheap      trajectory: cosines, norms, distance, path length
    economy    + floor and height from one forward at theta_{t+1}
    line       + the full line curve on the probe set
    curvature  + u^T H u by one Hessian-vector product; Lanczos sharpness every 100 steps
    full       + valley-floor barriers and gradient noise, every 10 steps

What each preset costs per step, against a plain SGD step, is measured in
docs/performance.md. A WalkConfig key walk.<probe> set to a schedule string overrides its
probe's default, "off" switches it off, and a probe the preset leaves out can be switched on
the same way.
"""

from __future__ import annotations

from sgdwalk.config import WalkConfig, settings_of
from sgdwalk.errors import ConfigError
from sgdwalk.probes.registry import PRESETS, ProbeSpec, registered
from sgdwalk.probes.schedule import Never, parse_schedule


def family_schedules(cfg: WalkConfig) -> dict[str, str]:
    """{probe name: schedule string} after applying the preset and the explicit keys.

    A probe registered after WalkConfig was made has no key: its preset decides.
    """
    level = PRESETS.index(cfg.preset)
    out = {}
    for spec in registered():
        text = getattr(cfg, spec.name, None)
        if text is None:
            text = spec.schedule if spec.rank <= level else "off"
        out[spec.name] = text
    return out


def build_probes(spec, steps_per_epoch: int = 1) -> list:
    """Probe instances for a preset name or a WalkConfig, in registry order."""
    cfg = WalkConfig(preset=spec) if isinstance(spec, str) else spec
    texts = family_schedules(cfg)
    probes = []
    for probe in registered():
        schedule = parse_schedule(texts[probe.name], steps_per_epoch, where=f"walk.{probe.name}")
        if not isinstance(schedule, Never):
            _check(cfg, probe, texts)
            probes.append(probe.cls.from_config(cfg, schedule))
    return probes


def _check(cfg: WalkConfig, probe: ProbeSpec, texts: dict[str, str]) -> None:
    """What only matters when `probe` runs: the probes it requires are on, and its settings'
    `when_on` checks (e.g. at least one line source)."""
    for name in probe.requires:
        if isinstance(parse_schedule(texts.get(name, "off"), 1), Never):
            raise ConfigError(f"walk.{probe.name}: expected the {name} probe on ({probe.name} "
                              f"requires it), got walk.{name}={texts.get(name, 'off')!r}")
    if probe.settings is not None and hasattr(probe.settings, "when_on"):
        probe.settings(**settings_of(cfg, probe)).when_on()
