"""Which runs a claim reads, and which of their steps it used."""

from __future__ import annotations

import pandas as pd

from sgdwalk.analysis.frames import Tables, series


def meant_for(t: Tables, cid: str | None) -> pd.DataFrame:
    """The runs claim `cid` may use: when the table holds runs of studies that declare the
    claim (their sweep.json's `claims`), only those; otherwise every run. So on a whole
    reproduction C1 reads the trajectory study's SGD runs, not lr-batch's or noise's, and
    C12 the trajectory study's GD runs, not the noise study's GD variant."""
    runs = t.runs
    if cid is None or "study" not in runs.columns:
        return runs
    studies = {s for s, claims in t.study_claims.items() if cid in claims}
    mine = runs["study"].isin(studies)
    return runs[mine] if mine.any() else runs


def undeclared(t: Tables, cid: str) -> bool:
    """True when the table holds runs of studies that declare the claims they are meant
    for (a non-empty `claims` list) and none declares `cid`: such runs were not designed
    to decide it (rule 5), so the claim is MISSING rather than decided from whatever they
    happen to record. A study that declares no claim (a user's own) says nothing."""
    declaring = [s for s, claims in t.study_claims.items() if claims]
    if "study" not in t.runs.columns or not t.runs["study"].isin(declaring).any():
        return False
    return not any(cid in claims for claims in t.study_claims.values())


def undeclared_needs(t: Tables, cid: str, studies: tuple[str, ...]) -> str:
    """What an undeclared claim needs: the study that would decide it, and what the
    folder's studies are meant for."""
    here = "; ".join(f"{s}: {', '.join(c)}" for s, c in sorted(t.study_claims.items()) if c)
    named = " or ".join(f"`sgdwalk sweep {s}`" for s in studies) or "a study listing it"
    return (f"runs of a study meant for {cid} ({named}); no study here lists it "
            f"({here})")


def claim_tables(t: Tables, cid: str) -> Tables:
    """`t` restricted to the runs meant for claim `cid` (`meant_for`); `t` itself when that
    is every run. The report draws each claim's figures from these."""
    runs = meant_for(t, cid)
    return t if len(runs) == len(t.runs) else t.subset(runs.index)


def eligible(t: Tables, algorithms=("sgd",), cid: str | None = None) -> pd.DataFrame:
    """Runs meant for claim `cid` (`meant_for`) of these algorithms that neither diverged
    nor failed (those are listed in a claim's notes and left out: their last steps are not
    comparable with finished runs)."""
    runs = meant_for(t, cid)
    return runs[runs["algorithm"].isin(algorithms) & ~runs["diverged"] & ~runs["failed"]]


def excluded_note(t: Tables, algorithms=("sgd",), cid: str | None = None) -> list[str]:
    """"left out diverged runs: a, b" (and failed runs) among the runs meant for `cid`."""
    runs = meant_for(t, cid)
    runs = runs[runs["algorithm"].isin(algorithms)]
    out = []
    for flag in ("diverged", "failed"):
        bad = runs.index[runs[flag]]
        if len(bad):
            out.append(f"left out {flag} runs: {', '.join(bad)}")
    return out


def steps_used(t: Tables, run_ids, *columns: str) -> dict:
    """run id -> {"first", "last", "n"}: the steps where all `columns` were finite."""
    out = {}
    for r in run_ids:
        s = series(t.steps, r, *columns)["step"]
        if len(s):
            out[r] = {"first": int(s.min()), "last": int(s.max()), "n": int(len(s))}
    return out


def seeds_by_condition(runs: pd.DataFrame) -> dict[int, list[str]]:
    """condition -> its runs (seeds), in run order."""
    return {c: list(g.index) for c, g in runs.groupby("condition", sort=True)}


def parameter_count(t: Tables, run_id: str) -> int | None:
    """The run's number of parameters P (meta.json's `parameters`, recorded by the
    trainer), or None when unknown."""
    p = t.meta(run_id).get("parameters")
    return int(p) if isinstance(p, (int, float)) and p > 0 else None
