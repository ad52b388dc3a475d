"""Barriers and rises on constructed sequences (exact answers, tolerance 1e-15)."""

from __future__ import annotations

import math

import pytest
import torch

from sgdwalk.functional import rises, segment_barrier


def test_a_hump_between_the_ends_is_a_barrier():
    height, pos = segment_barrier(torch.tensor([1.0, 2.0, 3.0, 1.5]))
    assert height == pytest.approx(1.5, abs=1e-15) and pos == pytest.approx(2 / 3, abs=1e-15)


def test_a_valley_has_a_negative_barrier():
    height, pos = segment_barrier(torch.tensor([1.0, 0.5, 0.2, 0.5, 2.0]))
    assert height == pytest.approx(0.5 - 2.0) and pos == 0.25  # first of the tied maxima


def test_positions_may_be_given():
    b = torch.tensor([0.0, 0.1, 0.7, 1.0])
    assert segment_barrier([0.0, 0.2, 0.1, 0.0], b=b) == (pytest.approx(0.2), pytest.approx(0.1))
    with pytest.raises(ValueError, match="positions"):
        segment_barrier([0.0, 0.2, 0.1, 0.0], b=b[:3])


def test_degenerate_profiles_give_nan():
    assert all(math.isnan(x) for x in segment_barrier(torch.tensor([1.0, 2.0])))
    assert all(math.isnan(x) for x in segment_barrier(torch.tensor([1.0, math.nan, 2.0])))
    assert all(math.isnan(x) for x in segment_barrier(torch.tensor([1.0, 3.0, math.inf])))


def test_rises_are_the_positive_increments():
    x = torch.tensor([3.0, 2.0, 2.5, 2.4, 3.0], dtype=torch.float64)
    assert torch.allclose(rises(x), torch.tensor([0.0, 0.5, 0.0, 0.6], dtype=torch.float64))
    assert torch.allclose(rises(x, lag=2), torch.tensor([0.0, 0.4, 0.5], dtype=torch.float64))
    assert rises(torch.tensor([1, 3, 2])).tolist() == [2.0, 0.0]  # ints become float64
    assert rises(x, lag=5).numel() == 0 and rises(x[:0]).numel() == 0
    assert math.isnan(float(rises(torch.tensor([1.0, math.nan]))[0]))
    with pytest.raises(ValueError, match="lag"):
        rises(x, lag=0)
