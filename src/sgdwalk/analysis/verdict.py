"""Verdicts: one rule for every tested quantity, and how a claim's parts combine.

A claim is decided by one or more *parts*. A part is a statistic with a threshold and a
direction ("above": the claim says the statistic exceeds the threshold; "below": it stays
under it), and a 95% bootstrap interval [lo, hi]:

    above: supported if lo > threshold, contradicted if hi < threshold
    below: supported if hi < threshold, contradicted if lo > threshold
    otherwise, or too few measurements (n < min_n), or nothing to resample: inconclusive

effect = value - threshold ("above") or threshold - value ("below"): positive favours
the claim. Parts combine with "all" (every part supported -> supported; any part
contradicted -> contradicted) or "any" (any part supported -> supported; every part
contradicted -> contradicted); everything else is inconclusive. A claim with none of its
inputs is MISSING and says what would be needed. See docs/claims.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SUPPORTED, CONTRADICTED, INCONCLUSIVE, MISSING = (
    "supported", "contradicted", "inconclusive", "missing")


@dataclass
class Part:
    """One tested quantity of a claim."""

    name: str  # short stable key, e.g. "median_window_share"
    statistic: str  # what the value is, in words
    value: float
    lo: float  # 95% bootstrap interval
    hi: float
    threshold: float
    direction: str = "above"  # "above" | "below": which side of the threshold the claim says
    n: int = 0  # measurements or comparisons behind the value
    min_n: int = 1  # fewer than this: inconclusive
    spread: bool = True  # False: every replicate equalled the point estimate
    blocked: str = ""  # non-empty: inconclusive for this reason (e.g. nothing to resample)

    @property
    def effect(self) -> float:
        return (self.value - self.threshold if self.direction == "above"
                else self.threshold - self.value)

    @property
    def verdict(self) -> str:
        if not all(math.isfinite(v) for v in (self.value, self.lo, self.hi)):
            return INCONCLUSIVE
        if self.n < self.min_n or self.blocked:
            return INCONCLUSIVE
        above, below = self.lo > self.threshold, self.hi < self.threshold
        if self.direction == "below":
            above, below = below, above
        return SUPPORTED if above else CONTRADICTED if below else INCONCLUSIVE

    def why(self) -> str:
        if self.n < self.min_n:
            return f"{self.n} measurements, fewer than {self.min_n}"
        if self.blocked:
            return self.blocked
        if not self.spread and math.isfinite(self.value):
            return "every bootstrap replicate equal"
        return ""

    def sentence(self) -> str:
        """The part's numbers and where they lie, e.g. "share of ... = 0.31 [0.25, 0.37]
        (n 585), below 0.5"."""
        v, why = self.verdict, self.why()
        if v == INCONCLUSIVE:
            where = why or f"its interval holds {self.threshold:g}"
        else:
            flip = {"above": "below", "below": "above"}[self.direction]
            where = f"{self.direction if v == SUPPORTED else flip} {self.threshold:g}"
            where += f" ({why})" if why else ""
        return (f"{self.statistic} = {_g(self.value)} [{_g(self.lo)}, {_g(self.hi)}] "
                f"(n {self.n}), {where}")

    def to_dict(self) -> dict:
        return {"name": self.name, "statistic": self.statistic, "value": self.value,
                "ci95": [self.lo, self.hi], "threshold": self.threshold,
                "direction": self.direction, "effect": self.effect, "n": self.n,
                "verdict": self.verdict, "note": self.why()}


@dataclass
class Claim:
    """The decision on one claim of PAPER.md."""

    id: str  # "C1" .. "C12"
    claim: str  # the claim, in words
    test: str  # the test that decides it
    parts: list[Part] = field(default_factory=list)
    combine: str = "all"  # "all" | "any"
    runs: list[str] = field(default_factory=list)  # run ids used
    steps: dict = field(default_factory=dict)  # run id -> {"first", "last", "n"} steps used
    needs: str = ""  # MISSING: what would be needed (metric, probe, study)
    notes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)  # per-run / per-condition numbers behind it

    @property
    def verdict(self) -> str:
        if not self.parts:
            return MISSING if self.needs else INCONCLUSIVE
        vs = [p.verdict for p in self.parts]
        if self.combine == "any":
            if SUPPORTED in vs:
                return SUPPORTED
            return CONTRADICTED if all(v == CONTRADICTED for v in vs) and not self.needs \
                else INCONCLUSIVE
        if CONTRADICTED in vs:
            return CONTRADICTED
        return SUPPORTED if all(v == SUPPORTED for v in vs) and not self.needs \
            else INCONCLUSIVE

    @property
    def headline(self) -> Part | None:
        """The part that decides the verdict: the first contradicted (all) / supported
        (any) part, the first inconclusive one, else the weakest (smallest margin)."""
        if not self.parts:
            return None
        v = self.verdict
        for p in self.parts:
            if p.verdict == v and v != SUPPORTED:
                return p
        if v == SUPPORTED and self.combine == "any":
            return next(p for p in self.parts if p.verdict == SUPPORTED)
        return min(self.parts, key=_margin)

    @property
    def rule(self) -> str:
        """How the parts make the verdict, in words."""
        n = len(self.parts)
        if n == 1:
            return ("its one part's verdict (supported only with nothing still needed)"
                    if self.combine == "all" else "its one part's verdict")
        if self.combine == "any":
            return (f"any of {n} parts supported: supported; all contradicted (and nothing "
                    "still needed): contradicted; else inconclusive")
        return (f"all {n} parts supported (and nothing still needed): supported; any "
                "contradicted: contradicted; else inconclusive")

    @property
    def evidence(self) -> str:
        """One sentence: the verdict and the numbers of the part that decided it."""
        if self.verdict == MISSING:
            return f"{self.id} missing: needs {self.needs}"
        h = self.headline
        if h is None:
            return f"{self.id} {self.verdict}"
        agree = sum(p.verdict == self.verdict for p in self.parts)
        tail = (f"; {agree} of {len(self.parts)} parts {self.verdict}"
                if len(self.parts) > 1 else "")
        needs = f"; still needs {self.needs}" if self.needs else ""
        return f"{self.id} {self.verdict}: {h.sentence()}{tail}{needs}"

    def to_dict(self) -> dict:
        h = self.headline
        return {
            "id": self.id, "claim": self.claim, "test": self.test, "verdict": self.verdict,
            "evidence": self.evidence, "rule": self.rule,
            "statistic": h.statistic if h else None, "value": h.value if h else None,
            "effect": h.effect if h else None, "ci95": [h.lo, h.hi] if h else None,
            "threshold": h.threshold if h else None, "combine": self.combine,
            "parts": [p.to_dict() for p in self.parts], "runs": self.runs,
            "steps": self.steps, "needs": self.needs or None, "notes": self.notes,
            "details": self.details,
        }


def _g(v: float) -> str:
    return f"{v:.3g}" if math.isfinite(v) else "-"


def _margin(p: Part) -> float:
    if not math.isfinite(p.lo):
        return -math.inf
    return p.lo - p.threshold if p.direction == "above" else p.threshold - p.hi

