"""Decide claims C1-C12 and those of the later studies (EOS1-EOS4, CAT1-CAT3, RV1-RV3)
from a run or a sweep; print them as a table; write them as JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from sgdwalk.analysis.claims_barrier import C6, C7
from sgdwalk.analysis.claims_catapult import CAT1, CAT2, CAT3
from sgdwalk.analysis.claims_eos import EOS1, EOS2, EOS3, EOS4
from sgdwalk.analysis.claims_final import C8, C9
from sgdwalk.analysis.claims_line import C1, C2, C10, C12
from sgdwalk.analysis.claims_river import RV1, RV2, RV3
from sgdwalk.analysis.claims_sweep import C3, C4, C5, C11
from sgdwalk.analysis.engine import decide
from sgdwalk.analysis.frames import Tables
from sgdwalk.analysis.verdict import MISSING, Claim
from sgdwalk.store.results import Results

# id -> spec, in the order of PAPER.md, then the studies of the field added later (claim i
# bootstraps with default_rng([seed, i]): appending keeps every earlier claim's draws)
CLAIMS = {spec.id: spec for spec in (C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12,
                                     EOS1, EOS2, EOS3, EOS4, CAT1, CAT2, CAT3,
                                     RV1, RV2, RV3)}
N_BOOT = 1000  # bootstrap replicates per claim
SEED = 0  # seed of the bootstrap generators (one per claim: default_rng([SEED, i]))


def as_tables(source) -> Tables:
    """A Tables from a Tables, a store's Results (`sgdwalk.store.load(dir)`) or a runs x
    steps DataFrame; analysis reads no files."""
    if isinstance(source, Tables):
        return source
    if isinstance(source, Results):
        return Tables(source)
    if isinstance(source, pd.DataFrame):
        return Tables.from_frames(source)
    raise TypeError(f"expected Tables, Results or a DataFrame, got {type(source).__name__} "
                    "(read a folder with sgdwalk.store.load)")


def decide_claims(source, n_boot: int = N_BOOT, seed: int = SEED,
                  only: list[str] | None = None) -> list[Claim]:
    """Decide each claim of PAPER.md whose inputs exist in `source` (a Tables, a store's
    Results or a runs x steps DataFrame); the others come back as MISSING with
    what they would need. Deterministic: claim i bootstraps with default_rng([seed, i]).
    only: claim ids to decide (default all, in the order of CLAIMS)."""
    t = as_tables(source)
    return [decide(spec, t, np.random.default_rng([seed, i]), n_boot)
            for i, (cid, spec) in enumerate(CLAIMS.items()) if only is None or cid in only]


def _num(v: float | None, width: int = 7) -> str:
    if v is None or not math.isfinite(v):
        return "-".rjust(width)
    return f"{v:{width}.3f}"


def format_claims(claims: list[Claim]) -> str:
    """A terminal table: per decided claim its headline row (verdict, value, effect, 95% CI,
    runs, steps, statistic), a row per further part, the rule that combines the parts and
    one sentence of evidence; then the missing claims with what they need, and the notes
    (runs left out, eps without correction), once each with their claims."""
    head = (f"{'claim':5s} {'verdict':12s} {'value':>7s} {'effect':>7s} {'95% CI':>17s} "
            f"{'runs':>4s} {'steps':>6s}  statistic")
    lines = [head, "-" * len(head)]
    for c in claims:
        if c.verdict != MISSING:
            lines.extend(_claim_rows(c))
    absent = [c for c in claims if c.verdict == MISSING]
    if absent:
        lines.append("")
        lines.append("not tested (inputs missing):")
        lines.extend(f"  {c.id:4s} needs {c.needs}" for c in absent)
    notes = {}  # note -> the claims it concerns
    for c in claims:
        for note in c.notes:
            notes.setdefault(note, []).append(c.id)
    if notes:  # a diverged or failed run is a result too: say which runs were set aside
        lines.append("")
        lines.extend(f"{note} (not in {', '.join(ids)})" if note.startswith("left out ")
                     else f"{note} ({', '.join(ids)})" for note, ids in notes.items())
    return "\n".join(lines)


def _claim_rows(c: Claim) -> list[str]:
    h = c.headline
    n_steps = sum(s["n"] for s in c.steps.values())
    ci = f"[{_num(h.lo)}, {_num(h.hi)}]" if h else ""
    rows = [f"{c.id:5s} {c.verdict:12s} {_num(h.value if h else None)} "
            f"{_num(h.effect if h else None)} {ci:>17s} {len(c.runs):4d} "
            f"{n_steps:6d}  {h.statistic if h else ''}"]
    for p in c.parts:
        if p is not h:
            rows.append(f"{'':5s} {'  ' + p.verdict:12s} {_num(p.value)} {_num(p.effect)} "
                        f"{'[' + _num(p.lo) + ', ' + _num(p.hi) + ']':>17s} "
                        f"{'':4s} {'':6s}  {p.statistic}")
    if c.needs:
        rows.append(f"{'':5s} {'':12s} still needs: {c.needs}")
    rows.append(f"{'':5s} rule: {c.rule}")
    rows.append(f"{'':5s} why:  {c.evidence}")
    return rows


def claims_dict(claims: list[Claim]) -> dict:
    import sgdwalk

    return {"sgdwalk": sgdwalk.__version__, "claims": [c.to_dict() for c in claims]}


def write_claims_json(claims: list[Claim], path) -> Path:
    """Write the claims as JSON (NaN -> null) to `path`, atomically; returns the path."""
    from sgdwalk.store import write_artifact

    text = json.dumps(_plain(claims_dict(claims)), indent=2, allow_nan=False) + "\n"
    return write_artifact(path, text, f"claims {path}")


def _plain(v):
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v
