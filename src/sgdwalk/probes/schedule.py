"""Schedules: when a probe runs, as a predicate on the step number.

Step t is the update theta_t -> theta_{t+1}, counted from 0. A schedule is written as a
string so it fits in TOML and on the command line:

    off                 never
    every:N             steps 0, N, 2N, ...
    epochs:1,10,25      every step of those 1-based epochs (the study's dense windows)
    log:N               step 0 and about N log-spaced steps per decade (1, 2, 3, 5, 7, 10...)
    steps:0,5,17        exactly those steps
    A+B                 the union, e.g. "every:100+epochs:1"
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sgdwalk.errors import ConfigError


@dataclass(frozen=True)
class Never:
    def __call__(self, step: int) -> bool:
        return False


@dataclass(frozen=True)
class Every:
    n: int

    def __call__(self, step: int) -> bool:
        return step % self.n == 0


@dataclass(frozen=True)
class EpochWindows:
    epochs: tuple[int, ...]  # 1-based
    steps_per_epoch: int

    def __call__(self, step: int) -> bool:
        return step // self.steps_per_epoch + 1 in self.epochs


@dataclass(frozen=True)
class LogSpaced:
    per_decade: int

    def __call__(self, step: int) -> bool:
        if step <= 1:
            return True
        j = round(self.per_decade * math.log10(step))
        return any(
            math.floor(10 ** (i / self.per_decade)) == step for i in (j - 1, j, j + 1) if i >= 0
        )


@dataclass(frozen=True)
class Steps:
    steps: frozenset[int]

    def __call__(self, step: int) -> bool:
        return step in self.steps


@dataclass(frozen=True)
class Union:
    parts: tuple

    def __call__(self, step: int) -> bool:
        return any(p(step) for p in self.parts)


def listed_beyond(schedule, total_steps: int) -> tuple[list[int], int]:
    """(the steps a schedule lists by name, steps:S or epochs:E, that a run of `total_steps`
    never reaches, how many it lists in all): a study's windows past the end of its runs."""
    parts = schedule.parts if isinstance(schedule, Union) else (schedule,)
    listed: set[int] = set()
    for part in parts:
        if isinstance(part, Steps):
            listed |= part.steps
        elif isinstance(part, EpochWindows):  # an epoch counts by its first step
            listed |= {(e - 1) * part.steps_per_epoch for e in part.epochs}
    return sorted(t for t in listed if t >= total_steps), len(listed)


def parse_schedule(spec: str, steps_per_epoch: int, where: str = "schedule"):
    """Turn a schedule string into a callable step -> bool."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"{where}: expected a schedule such as every:10, got {spec!r}")
    parts = [_parse_one(p.strip(), steps_per_epoch, where) for p in spec.split("+")]
    parts = [p for p in parts if not isinstance(p, Never)]
    if not parts:
        return Never()
    return parts[0] if len(parts) == 1 else Union(tuple(parts))


def _parse_one(text: str, steps_per_epoch: int, where: str):
    expected = f"{where}: expected off, every:N, epochs:E1,E2, log:N or steps:S1,S2, got {text!r}"
    if text in ("off", "never", ""):
        return Never()
    kind, sep, arg = text.partition(":")
    if not sep:
        raise ConfigError(expected)
    try:
        numbers = [int(a) for a in arg.split(",") if a.strip()]
    except ValueError:
        raise ConfigError(expected) from None
    if not numbers:
        raise ConfigError(expected)
    if kind == "every" and len(numbers) == 1 and numbers[0] > 0:
        return Every(numbers[0])
    if kind == "epochs" and min(numbers) >= 1:
        return EpochWindows(tuple(sorted(set(numbers))), steps_per_epoch)
    if kind == "log" and len(numbers) == 1 and numbers[0] > 0:
        return LogSpaced(numbers[0])
    if kind == "steps" and min(numbers) >= 0:
        return Steps(frozenset(numbers))
    raise ConfigError(expected)
