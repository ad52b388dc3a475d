"""Claims C1-C12 and per-run summaries, decided from tables (never from torch objects).

    decide_claims(results) -> [Claim]        each claim: statistic, effect, 95% bootstrap
                                             interval, verdict, runs and steps used
    format_claims(claims) -> str             the terminal table
    write_claims_json(claims, path) -> Path  the same as JSON
    summarize_runs(table) -> DataFrame       one row per run
    Tables(results) -> Tables                what claims read: sgdwalk.store.load(dir)'s
                                             Results with conditions and labels

Each claim is a declarative ClaimSpec (claims_*.py) decided by one engine (engine.py):
eligible runs -> inputs -> hierarchical block bootstrap -> parts -> verdict. The verdict
rules and every threshold are in docs/claims.md.
"""

from sgdwalk.analysis.decide import (
    CLAIMS,
    claims_dict,
    decide_claims,
    format_claims,
    write_claims_json,
)
from sgdwalk.analysis.frames import Tables
from sgdwalk.analysis.summary import summarize_runs
from sgdwalk.analysis.verdict import (
    CONTRADICTED,
    INCONCLUSIVE,
    MISSING,
    SUPPORTED,
    Claim,
    Part,
)

__all__ = [
    "CLAIMS",
    "CONTRADICTED",
    "INCONCLUSIVE",
    "MISSING",
    "SUPPORTED",
    "Claim",
    "Part",
    "Tables",
    "claims_dict",
    "decide_claims",
    "format_claims",
    "summarize_runs",
    "write_claims_json",
]
