"""Shares of flagged measurements (steps, or (step, k) cells), pooled over runs.

A run's flags are 0/1 with NaN where not measured, one row per step (one column, or one
per gap k). They are kept as *counts* per row, (ones, cells), so that

    share = sum of ones / sum of cells

over the rows of every run pooled, and a bootstrap replicate resamples those rows in
circular blocks within each run and the runs (seeds) within each condition
(bootstrap.Draw). Claims (C2, C6, C7, C10) and the per-run summaries use this one share.
"""

from __future__ import annotations

import numpy as np

from sgdwalk.analysis.bootstrap import IDENTITY, Blocks


def counts(flags) -> np.ndarray:
    """Per row of 0/1 flags (n,) or (n, m), NaN = not measured: (ones, cells), (n, 2)."""
    m = np.asarray(flags, dtype=float)
    m = m[:, None] if m.ndim == 1 else m
    return np.stack([np.nansum(m, axis=1), np.isfinite(m).sum(axis=1)], axis=1)


def count_blocks(flags) -> Blocks:
    """A run's flags as counts prepared for block-bootstrap sums."""
    return Blocks(counts(flags))


def pooled(blocks: dict, conds: dict, draw=IDENTITY):
    """Column sums over the rows of the runs of every condition: seeds drawn within each
    condition (conds: condition -> run ids), rows in blocks within each run."""
    tot = 0.0
    for rs in conds.values():
        for r in draw.seeds(rs):
            tot = tot + draw.total(blocks[r])[0]
    return tot


def share(blocks: dict, conds: dict | None = None, draw=IDENTITY) -> float:
    """Share of 1s among the measured flags of the runs in `blocks` (run -> count_blocks),
    pooled over `conds` (default: every run, as one condition); NaN without a cell."""
    tot = pooled(blocks, {0: list(blocks)} if conds is None else conds, draw)
    ones, cells = tot if np.ndim(tot) else (0.0, 0.0)
    return ones / cells if cells else np.nan


def flag_share(flags) -> float:
    """The share of 1s among one run's measured flags, as measured (no resampling)."""
    return float(share({"run": count_blocks(flags)}))


def shares(data: dict, draw=IDENTITY) -> dict[str, float]:
    """A statistic for the engine: name -> share(blocks, conds, draw) for each
    name -> (blocks, conds) of `data`, in order."""
    return {name: share(blocks, conds, draw) for name, (blocks, conds) in data.items()}
