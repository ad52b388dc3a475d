"""The bootstrap, the concordance statistics and the verdict rules, on known answers."""

import math

import numpy as np
import pytest

from sgdwalk.analysis.bootstrap import (
    IDENTITY,
    Blocks,
    Draw,
    estimate,
    pair_signs,
    rel_diff,
    spearman,
)
from sgdwalk.analysis.claims_line import epoch_groups
from sgdwalk.analysis.verdict import (
    CONTRADICTED,
    INCONCLUSIVE,
    MISSING,
    SUPPORTED,
    Claim,
    Part,
)


def test_block_bootstrap_draws_n_valid_indices_in_blocks():
    d = Draw(np.random.default_rng(0))
    for n in (1, 2, 7, 64, 1000):
        idx = d.steps(n)
        assert len(idx) == n and idx.min() >= 0 and idx.max() < n
    idx = d.steps(1000)  # block length round(1000 ** (1/3)) = 10: consecutive runs of 10
    assert np.all((np.diff(idx.reshape(100, 10), axis=1) % 1000) == 1)
    assert list(IDENTITY.steps(4)) == [0, 1, 2, 3] and IDENTITY.seeds(["a", "b"]) == ["a", "b"]


def test_seeds_are_drawn_with_replacement_only_when_there_are_several():
    d = Draw(np.random.default_rng(1))
    assert d.seeds(["only"]) == ["only"]
    drawn = [tuple(d.seeds(["a", "b", "c"])) for _ in range(200)]
    assert all(len(x) == 3 and set(x) <= {"a", "b", "c"} for x in drawn)
    assert any(len(set(x)) < 3 for x in drawn)


def test_interval_of_a_mean_covers_the_truth_at_about_the_stated_rate():
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(60):
        x = rng.normal(1.0, 1.0, 200)
        est = estimate(lambda d, x=x: x[d.steps(len(x))].mean(), np.random.default_rng(3), 300)[""]
        assert est.lo <= est.value <= est.hi
        hits += est.lo <= 1.0 <= est.hi
    assert hits >= 50  # nominal 95%; blocks of 6 on iid data widen it a little at most


def test_estimate_is_deterministic_and_returns_every_named_value():
    x = np.arange(50.0)

    def stat(d):
        i = d.steps(len(x))
        return {"mean": x[i].mean(), "max": x[i].max()}

    a = estimate(stat, np.random.default_rng(4), 100)
    b = estimate(stat, np.random.default_rng(4), 100)
    assert a == b and set(a) == {"mean", "max"}
    assert a["mean"].value == pytest.approx(24.5) and a["max"].value == 49


def test_pair_signs_is_kendall_concordance():
    x = [1, 2, 3]
    assert pair_signs(x, [10, 20, 30]).ravel().tolist() == [1, 1, 1]
    assert pair_signs(x, [30, 20, 10]).ravel().tolist() == [-1, -1, -1]
    assert pair_signs([1, 1, 2], [5, 6, 7]).ravel().tolist() == [1, 1]  # equal x: no pair
    s = pair_signs(x, [[1, 3], [2, 2], [np.nan, 1]])  # two checkpoints
    assert s.shape == (3, 2) and s[0].tolist() == [1, -1] and math.isnan(s[1, 0])


def test_relative_difference_and_spearman():
    assert rel_diff(3.0, 1.0) == pytest.approx(1.0)
    assert rel_diff(1.0, 3.0) == pytest.approx(-1.0)
    assert math.isnan(float(rel_diff(0.0, 0.0)))
    assert spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2], [1, 2]))


def test_epoch_groups_merge_sparse_epochs_until_each_has_enough():
    e = np.array([1] * 12 + [2] * 3 + [3] * 8 + [4] * 2)
    g = epoch_groups(e, 10)
    assert g.tolist() == [1] * 12 + [2] * 11 + [2] * 2  # 2+3 merged; the short 4 joins them
    assert epoch_groups(np.array([1, 1, 2]), 10).tolist() == [1, 1, 1]


@pytest.mark.parametrize(
    "lo, hi, direction, verdict",
    [(0.6, 0.9, "above", SUPPORTED), (0.1, 0.4, "above", CONTRADICTED),
     (0.4, 0.6, "above", INCONCLUSIVE), (0.1, 0.4, "below", SUPPORTED),
     (0.6, 0.9, "below", CONTRADICTED), (0.5, 0.7, "above", INCONCLUSIVE)],
)
def test_part_verdict_rule(lo, hi, direction, verdict):
    p = Part("x", "x", (lo + hi) / 2, lo, hi, 0.5, direction, n=100)
    assert p.verdict == verdict
    assert (p.effect > 0) == ((lo + hi) / 2 > 0.5 if direction == "above" else (lo + hi) / 2 < 0.5)


def test_too_few_measurements_or_a_block_make_a_part_inconclusive():
    assert Part("x", "x", 0.9, 0.8, 1.0, 0.5, n=3, min_n=10).verdict == INCONCLUSIVE
    assert Part("x", "x", 0.9, 0.8, 1.0, 0.5, n=30, blocked="why").verdict == INCONCLUSIVE
    assert Part("x", "x", math.nan, math.nan, math.nan, 0.5, n=30).verdict == INCONCLUSIVE


def part(verdict):
    lo, hi = {SUPPORTED: (0.6, 0.9), CONTRADICTED: (0.1, 0.2), INCONCLUSIVE: (0.4, 0.6)}[verdict]
    return Part(verdict, verdict, (lo + hi) / 2, lo, hi, 0.5, n=100)


@pytest.mark.parametrize(
    "parts, combine, verdict",
    [((SUPPORTED, SUPPORTED), "all", SUPPORTED), ((SUPPORTED, INCONCLUSIVE), "all", INCONCLUSIVE),
     ((SUPPORTED, CONTRADICTED), "all", CONTRADICTED),
     ((INCONCLUSIVE, SUPPORTED), "any", SUPPORTED),
     ((CONTRADICTED, INCONCLUSIVE), "any", INCONCLUSIVE),
     ((CONTRADICTED, CONTRADICTED), "any", CONTRADICTED)],
)
def test_parts_combine(parts, combine, verdict):
    c = Claim("C0", "c", "t", parts=[part(v) for v in parts], combine=combine)
    assert c.verdict == verdict
    assert c.headline in c.parts
    if combine == "all" and verdict != SUPPORTED:  # the part that decided it
        assert c.headline.verdict == verdict


def test_a_claim_with_unmet_needs_is_never_supported_by_all_of_its_parts():
    c = Claim("C0", "c", "t", parts=[part(SUPPORTED)], needs="more runs")
    assert c.verdict == INCONCLUSIVE
    assert Claim("C0", "c", "t", needs="x").verdict == MISSING


def test_block_sums_resample_whole_blocks_of_the_series():
    x = np.arange(100.0)
    b = Blocks(np.stack([x, np.ones(100)], axis=1))
    assert b.size == 5 and b.sums[0].tolist() == [0 + 1 + 2 + 3 + 4, 5]
    assert b.sums[98].tolist() == [98 + 99 + 0 + 1 + 2, 5]  # circular
    total, n = IDENTITY.total(b)
    assert total.tolist() == [x.sum(), 100] and n == 100
    d = Draw(np.random.default_rng(5))
    means = [s[0] / n for s, n in (d.total(b) for _ in range(400))]
    assert np.mean(means) == pytest.approx(x.mean(), rel=0.05)
    (s, cnt), n = d.total(b)
    assert n == 100 and cnt == 100
