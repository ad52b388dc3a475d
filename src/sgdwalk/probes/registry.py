"""The probe registry: every probe file declares its name, default schedule, first preset,
settings and requirements in one `@register_probe(...)`; the presets, `WalkConfig` (one
`walk.<name>` schedule key per probe plus its settings' keys) and the default order of a
walk's probes are derived from the registrations.

    @dataclass(frozen=True)
    class BarrierSettings:
        barrier_ks: tuple[int, ...] = (1, 2, 5, 10)  # step gaps k
        barrier_points: int = 9  # points along each segment

    @register_probe("barrier", schedule="every:10", preset="full", settings=BarrierSettings,
                    requires=("line",), summary="barriers on the valley floor and the path")
    class Barrier(Probe):
        ...

`requires` names the probes whose results this one reads: `Walk` runs them first, whatever
order the probes were given in, and refuses a walk that lacks one.

Registration must stay light: `sgdwalk.config` reads every registration to build
`WalkConfig`, and importing it must not import torch (about 40 ms instead of 1 s; the store,
the studies and the plots read configs without torch). So a probe file imports torch and
the math it calls inside the methods that use them. A probe registered outside the package
(after `sgdwalk.config` was imported) has no `walk.*` keys; it still runs in its preset.
"""

from __future__ import annotations

from dataclasses import dataclass

PRESETS = ("off", "cheap", "economy", "line", "curvature", "full")  # by cost, cheapest first


@dataclass(frozen=True)
class ProbeSpec:
    """One registered probe."""

    name: str  # the probe's name and its schedule key walk.<name>
    cls: type  # the Probe subclass, built by `cls.from_config(walk_config, schedule)`
    schedule: str  # its schedule once its preset is on, e.g. "every:10"
    preset: str | None  # the cheapest preset that runs it; None: runs only when scheduled
    settings: type | None  # frozen dataclass of the walk.* keys it owns; None: no settings
    requires: tuple[str, ...]  # probes whose results it reads: present, and run before it
    summary: str  # what it measures, in one line (documents its walk.<name> key)

    @property
    def rank(self) -> int:
        """Position of its preset in PRESETS (past the end for a probe in no preset)."""
        return PRESETS.index(self.preset) if self.preset is not None else len(PRESETS)


PROBES: dict[str, ProbeSpec] = {}  # name -> spec; filled by @register_probe


def register_probe(
    name: str,
    *,
    schedule: str = "every:1",
    preset: str | None = None,
    settings: type | None = None,
    requires: tuple[str, ...] = (),
    summary: str = "",
):
    """Class decorator: register a Probe subclass under `name` (names must be unique).

    Sets the class's `name` and `requires`, so that every instance carries them.
    """
    if preset is not None and preset not in PRESETS[1:]:
        raise ValueError(f"register_probe({name!r}): expected a preset in {PRESETS[1:]}, "
                         f"got {preset!r}")  # a bug in a probe file, not user input

    def add(cls: type) -> type:
        if name in PROBES:
            raise ValueError(f"probe {name!r} is already registered")  # a bug, not user input
        cls.name, cls.requires = name, tuple(requires)
        PROBES[name] = ProbeSpec(name, cls, schedule, preset, settings, tuple(requires), summary)
        return cls

    return add


def registered() -> list[ProbeSpec]:
    """The registered probes, cheapest preset first and by name within a preset: the order of
    the walk.* keys and of a preset's probes (and a valid run order for the built-ins)."""
    return sorted(PROBES.values(), key=lambda spec: (spec.rank, spec.name))
