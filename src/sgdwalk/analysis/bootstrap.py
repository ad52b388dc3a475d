"""Bootstrap uncertainty for claim statistics, with one definition per statistic.

A statistic is a function `stat(draw) -> float | dict[str, float]` that reads its data
through a *draw*: `draw.seeds(runs)` gives the runs of one condition to use and
`draw.steps(n)` the indices of n ordered measurements to use. `IDENTITY` returns them
unchanged (the point estimate); `Draw(rng)` resamples (one bootstrap replicate):

- seeds: the runs of a condition are drawn with replacement when there are several
  (a condition's seeds are runs differing only in train.seed);
- steps: a circular block bootstrap over the ordered measurements with block length
  round(n ** (1/3)), so the autocorrelation of consecutive steps is kept inside blocks;
  `draw.total(Blocks(x))` gives the column sums of such a resample from precomputed
  block sums (fast for shares and means of long series).

`estimate(stat, rng, n_boot)` returns the point estimate and the 95% percentile interval
of every value the statistic returns. Deterministic for a given generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

LEVEL = 0.95  # two-sided percentile interval


def block_length(n: int) -> int:
    return max(1, round(n ** (1 / 3)))


class Blocks:
    """An ordered series (n,) or (n, m) prepared for fast block-bootstrap sums: the sum of
    every circular block of block_length(n) rows, computed once, so a replicate's column
    sums cost ceil(n / L) look-ups instead of a resample of n rows."""

    def __init__(self, x):
        self.x = np.asarray(x, dtype=float)
        n = len(self.x)
        self.n, self.size = n, block_length(n)
        ext = np.concatenate([self.x, self.x[:self.size - 1]])
        c = np.concatenate([np.zeros((1, *self.x.shape[1:])), np.cumsum(ext, axis=0)])
        self.sums = c[self.size:self.size + n] - c[:n]  # sums[i] = x[i] + ... + x[i+L-1]


class _Identity:
    def seeds(self, runs):
        return list(runs)

    def steps(self, n: int) -> np.ndarray:
        return np.arange(n)

    def total(self, blocks: Blocks):
        """Column sums of the series and its length."""
        return blocks.x.sum(axis=0), blocks.n


IDENTITY = _Identity()


class Draw:
    """One bootstrap replicate's resampling of seeds and steps."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def seeds(self, runs):
        runs = list(runs)
        if len(runs) < 2:
            return runs
        return [runs[i] for i in self.rng.integers(0, len(runs), len(runs))]

    def steps(self, n: int) -> np.ndarray:
        if n < 2:
            return np.arange(n)
        block = block_length(n)
        starts = self.rng.integers(0, n, math.ceil(n / block))
        return ((starts[:, None] + np.arange(block)) % n).ravel()[:n]

    def total(self, blocks: Blocks):
        """Column sums and length of a block-resampled series of ceil(n / L) whole blocks."""
        if blocks.n < 2:
            return blocks.x.sum(axis=0), blocks.n
        k = math.ceil(blocks.n / blocks.size)
        return blocks.sums[self.rng.integers(0, blocks.n, k)].sum(axis=0), k * blocks.size


@dataclass(frozen=True)
class Estimate:
    value: float  # the statistic on the data as measured
    lo: float  # lower end of the 95% bootstrap interval
    hi: float  # upper end
    spread: bool  # False when every replicate equalled the point (nothing to resample)


def estimate(stat, rng: np.random.Generator, n_boot: int) -> dict[str, Estimate]:
    """Point estimate and percentile interval of each value `stat(draw)` returns.

    stat returns a float (reported under the key "") or a dict name -> float. Replicates
    whose value is not finite are left out of the interval.
    """
    point = _as_dict(stat(IDENTITY))
    reps = {k: [] for k in point}
    for _ in range(n_boot):
        for k, v in _as_dict(stat(Draw(rng))).items():
            reps[k].append(v)
    out = {}
    a = (1 - LEVEL) / 2
    for k, v in point.items():
        r = np.asarray(reps[k], dtype=float)
        r = r[np.isfinite(r)]
        if not np.isfinite(v) or not len(r):
            out[k] = Estimate(float(v), math.nan, math.nan, False)
            continue
        lo, hi = np.quantile(r, [a, 1 - a])
        lo, hi = min(lo, v), max(hi, v)  # the interval always holds the point estimate
        out[k] = Estimate(float(v), float(lo), float(hi), bool(np.ptp(r) > 0))
    return out


def _as_dict(value) -> dict[str, float]:
    if isinstance(value, dict):
        return {k: float(v) for k, v in value.items()}
    return {"": float(value)}


def pair_signs(x, values: np.ndarray) -> np.ndarray:
    """Kendall-style pair signs: for conditions with covariate x (n,) and values (n, m)
    (m checkpoints), sign((x_j - x_i)(v_j - v_i)) for every pair i < j with x_i != x_j;
    shape (pairs, m); NaN where a value is missing. Ties in v give 0."""
    x = np.asarray(x, dtype=float)
    v = np.asarray(values, dtype=float)
    if v.ndim == 1:
        v = v[:, None]
    i, j = np.triu_indices(len(x), 1)
    keep = x[i] != x[j]
    i, j = i[keep], j[keep]
    return np.sign(x[j] - x[i])[:, None] * np.sign(v[j] - v[i])


def rel_diff(a, b):
    """Symmetric relative difference (a - b) / ((|a| + |b|) / 2): bounded in [-2, 2],
    0 when equal; NaN when both are 0."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    den = (np.abs(a) + np.abs(b)) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a - b) / den, np.nan)


def spearman(x, y) -> float:
    """Spearman rank correlation (average ranks for ties); NaN with < 3 finite pairs or a
    constant side."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return math.nan
    rx = pd.Series(x[ok]).rank().to_numpy()
    ry = pd.Series(y[ok]).rank().to_numpy()
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def pooled_median(values: dict, conds: dict, draw=IDENTITY) -> float:
    """Median of the values of every run pooled: seeds drawn within each condition (conds:
    condition -> run ids), each run's ordered values resampled in circular blocks; NaN
    without a value."""
    parts = [values[r][draw.steps(len(values[r]))]
             for rs in conds.values() for r in draw.seeds(rs)]
    pooled = np.concatenate(parts) if parts else np.zeros(0)
    return float(np.median(pooled)) if len(pooled) else math.nan


def nanmean(values) -> float:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else math.nan
