"""Claims as declarative specs, and the one engine that decides them.

A claim (`ClaimSpec`) is its wording, the algorithms whose runs it may use and one or
more statistics. A `Statistic` is three things:

    inputs(tables, runs) -> Inputs | str   the eligible runs grouped into what the
                                           statistic reads (bootstrap blocks, families of
                                           conditions, pairs), or, as a string, what is
                                           missing for it
    compute(data, draw) -> {name: value}   the statistic on the measured data (draw =
                                           IDENTITY) or on one bootstrap replicate
    parts: (PartSpec, ...)                 which value (by part name) is tested against
                                           which threshold, in which direction

`decide(spec, tables, rng, n_boot)` runs every claim the same way:

    a folder of studies none of which lists the claim: MISSING, naming its study ->
    eligible runs (scope.eligible: meant for the claim, of its algorithms, not diverged
    or failed) -> inputs of each statistic (the first missing one makes the claim
    MISSING) -> hierarchical block bootstrap of each statistic in turn, from one generator
    (bootstrap.estimate) -> one Part per PartSpec whose value the statistic returned ->
    the claim's verdict from its parts (verdict.Claim).

A new claim is one ClaimSpec (plus, when no existing statistic fits, one inputs and one
compute function) and its test; decide_claims lists it in `decide.CLAIMS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from sgdwalk.analysis.bootstrap import Estimate, estimate
from sgdwalk.analysis.frames import Tables
from sgdwalk.analysis.scope import eligible, excluded_note, undeclared, undeclared_needs
from sgdwalk.analysis.verdict import Claim, Part
from sgdwalk.errors import ConfigError


@dataclass(frozen=True)
class PartSpec:
    """One tested value of a statistic: supported when its 95% interval lies beyond
    `threshold` on the side `direction` says (verdict.Part)."""

    name: str  # stable short key of the part and of the statistic's value it tests
    statistic: str  # the value in words; {names} are filled from Inputs.text
    threshold: float
    direction: str = "above"  # "above" | "below": the side of the threshold the claim says
    min_n: int = 1  # fewer measurements (Inputs.n[name]): inconclusive

    def __post_init__(self):
        _check(f"part {self.name}: direction", self.direction, ("above", "below"))


@dataclass
class Inputs:
    """What a statistic's inputs function found in the eligible runs."""

    data: Any  # what compute(data, draw) reads
    runs: list[str]  # run ids used
    steps: dict  # run id -> {"first", "last", "n"}: steps used (scope.steps_used)
    n: dict[str, int]  # part name -> measurements or comparisons behind its value
    text: dict = field(default_factory=dict)  # fills the {names} of PartSpec.statistic
    details: dict = field(default_factory=dict)  # numbers behind the claim, reported as is
    needs: str = ""  # inputs still missing for parts whose value compute does not return
    notes: list[str] = field(default_factory=list)
    blocked: str = ""  # non-empty: every part of this statistic is inconclusive for this


@dataclass(frozen=True)
class Statistic:
    """A statistic of a claim with its inputs and the parts it decides."""

    inputs: Callable[[Tables, pd.DataFrame], Inputs | str]
    compute: Callable[[Any, Any], dict[str, float]]
    parts: tuple[PartSpec, ...]


@dataclass(frozen=True)
class ClaimSpec:
    """One claim of PAPER.md as data: its wording, its runs and its statistics."""

    id: str  # "C1" .. "C12"
    claim: str  # the claim, in words
    test: str  # the test that decides it, in words
    statistics: tuple[Statistic, ...]  # bootstrapped in this order, from one generator
    studies: tuple[str, ...] = ()  # the shipped studies meant to decide it (their claims)
    algorithms: tuple[str, ...] = ("sgd",)  # runs of these optim.algorithm values
    combine: str = "all"  # "all" | "any": how the parts make the verdict (verdict.Claim)
    needs_runs: str = ""  # when set and no run is eligible: MISSING, needing this
    needs_suffix: str = ""  # appended to what a statistic's inputs say is missing

    def __post_init__(self):
        _check(f"claim {self.id}: combine", self.combine, ("all", "any"))


def decide(spec: ClaimSpec, t: Tables, rng: np.random.Generator, n_boot: int) -> Claim:
    """The claim `spec` decided on the tables `t` with `n_boot` bootstrap replicates."""
    if undeclared(t, spec.id):  # runs not designed for the claim decide nothing (rule 5)
        return _missing(spec, undeclared_needs(t, spec.id, spec.studies), n_boot)
    runs = eligible(t, spec.algorithms, spec.id)
    if spec.needs_runs and not len(runs):
        return _missing(spec, spec.needs_runs, n_boot)
    found = []
    for stat in spec.statistics:
        got = stat.inputs(t, runs)
        if isinstance(got, str):
            return _missing(spec, got + spec.needs_suffix, n_boot)
        found.append(got)
    parts = []
    for stat, got in zip(spec.statistics, found):
        est = estimate(partial(stat.compute, got.data), rng, n_boot)
        parts += [_part(p, est[p.name], got) for p in stat.parts if p.name in est]
    # one statistic: its runs in its order; several (C12): every run any of them used;
    # the steps are the first statistic's (C12: those with C1's line columns)
    used = found[0].runs if len(found) == 1 else sorted({r for g in found for r in g.runs})
    details = {k: v for g in found for k, v in g.details.items()}
    return Claim(spec.id, spec.claim, spec.test, parts=parts, combine=spec.combine,
                 runs=used, steps=found[0].steps,
                 needs="; ".join(g.needs for g in found if g.needs),
                 notes=list(dict.fromkeys(excluded_note(t, spec.algorithms, spec.id)
                                          + [n for g in found for n in g.notes])),
                 details={**details, "n_boot": n_boot})


def _part(p: PartSpec, est: Estimate, got: Inputs) -> Part:
    return Part(p.name, p.statistic.format(**got.text), est.value, est.lo, est.hi,
                p.threshold, p.direction, got.n[p.name], p.min_n, est.spread, got.blocked)


def _check(what: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{what}: expected one of {', '.join(allowed)}, got {value!r}")


def _missing(spec: ClaimSpec, needs: str, n_boot: int) -> Claim:
    return Claim(spec.id, spec.claim, spec.test, needs=needs, details={"n_boot": n_boot})
