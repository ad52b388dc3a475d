"""What every claim needs: its wording, the runs it may use, the steps it used."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sgdwalk.analysis.tables import Tables, series
from sgdwalk.analysis.verdict import Claim

# id -> (claim, the test that decides it), from PAPER.md
TEXT = {
    "C1": ("For most of training the loss on the line theta_t -> theta_t+1 is roughly convex "
           "with its minimum strictly inside (0, 1)",
           "share of steps with an interior, convex minimum > 0.5 in every analysed epoch"),
    "C2": ("SGD moves at a height above the valley floor, bouncing between its walls",
           "height > noise for most steps; cosine of consecutive updates mostly < 0"),
    "C3": ("A larger learning rate keeps SGD higher above the floor",
           "median height grows with lr at fixed batch size, across seeds"),
    "C4": ("A smaller batch size injects noise and makes SGD explore more",
           "distance from init ordered by batch size at fixed lr, at matched epochs and "
           "matched iterations"),
    "C5": ("lr and batch size play different roles: lr/B alone does not fix the dynamics",
           "runs with equal lr/B differ in height (driven by lr) and in exploration "
           "(driven by B)"),
    "C6": ("The valley floor has barriers",
           "segments between floor points rise above both ends beyond the noise for a "
           "non-trivial share of (t, k); the floor-loss sequence is non-monotone"),
    "C7": ("Moving above the floor lets SGD travel far from init without being stopped by "
           "those barriers",
           "large-lr / small-B runs: large distance, few barriers on the iterate path "
           "despite barriers on the floor path"),
    "C8": ("Large lr / small B end in flatter regions that generalise better",
           "lower top Hessian eigenvalue and higher test accuracy for those runs; "
           "correlation over the sweep"),
    "C9": ("GD plus isotropic noise of matched size does not behave like SGD",
           "GD + noise vs SGD on distance, height, final loss, test accuracy"),
    "C10": ("SGD rarely crosses a barrier between consecutive iterates",
            "share of steps whose line has an interior maximum above both ends beyond "
            "the noise is small"),
    "C11": ("Gradients of larger batches align more with the top Hessian eigenvectors and "
            "explore less", "alignment grows with B while distance shrinks"),
    "C12": ("Full-batch GD also oscillates across a valley", "the C1 and C2 tests on GD runs"),
}


def new_claim(cid: str, **kw) -> Claim:
    claim, test = TEXT[cid]
    return Claim(cid, claim, test, **kw)


def missing(cid: str, needs: str) -> Claim:
    return new_claim(cid, needs=needs)


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


def epoch_groups(epochs: np.ndarray, min_n: int) -> np.ndarray:
    """Group labels for measurements by (1-based) epoch: consecutive epochs are merged until
    a group holds >= min_n measurements; a short remainder joins the group before it.
    The label is the group's first epoch. epochs must be sorted."""
    labels = np.empty(len(epochs), dtype=np.int64)
    uniq, counts = np.unique(epochs, return_counts=True)
    group_of, start, acc, closed = {}, None, 0, []
    for e, c in zip(uniq, counts):
        if start is None:
            start = e
        acc += c
        group_of[e] = start
        if acc >= min_n:
            closed.append(start)
            start, acc = None, 0
    if start is not None and closed:  # a short remainder joins the previous group
        for e in uniq:
            if group_of[e] == start:
                group_of[e] = closed[-1]
    for i, e in enumerate(epochs):
        labels[i] = group_of[e]
    return labels


def seeds_by_condition(runs: pd.DataFrame) -> dict[int, list[str]]:
    return {c: list(g.index) for c, g in runs.groupby("condition", sort=True)}
