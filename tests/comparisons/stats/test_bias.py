"""Position and length bias on hand-made tables."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats
from scipy.stats import binomtest

from comparisons.stats import analyze

from .helpers import pair_votes, votes_frame


def test_position_bias_counts_left_picks_among_decisive_votes():
    frame = votes_frame(pair_votes("A", "B", 20, 20, 4))
    # A was on the left for the first 30 votes: 20 A wins + 10 B wins; then B left for the rest.
    frame["left_model"] = ["A"] * 30 + ["B"] * 14
    bias = analyze(frame, n_boot=0)["position_bias"]
    # Left picks: 20 (A left, A won) + 10 (B left, B won among the last 10 decisive) = 30 of 40.
    assert (bias["decisive"], bias["left_picks"], bias["right_picks"]) == (40, 30, 10)
    assert bias["left_share"] == pytest.approx(75.0)
    assert bias["p_value"] == pytest.approx(binomtest(30, 40).pvalue)
    assert bias["ci_low"] < 75.0 < bias["ci_high"]


def test_position_bias_needs_left_model():
    bias = analyze(votes_frame(pair_votes("A", "B", 2, 2, 0)), n_boot=0)["position_bias"]
    assert bias["available"] is False and bias["left_share"] is None


def test_length_bias_longer_response_always_wins():
    frame = votes_frame(pair_votes("A", "B", 10, 10, 2))
    frame["length_a"] = [500] * 10 + [100] * 10 + [300] * 2
    frame["length_b"] = [100] * 10 + [2000] * 10 + [300] * 2  # equal lengths are left out
    bias = analyze(frame, n_boot=200, seed=0)["length_bias"]
    assert bias["available"] is True and bias["votes"] == 20
    assert bias["longer_win_rate"] == 100.0
    buckets = {b["chars"]: b for b in bias["buckets"]}
    assert buckets["300-999"]["votes"] == 10 and buckets["1000+"]["votes"] == 10
    assert list(buckets) == ["1-99", "100-299", "300-999", "1000+"]
    assert buckets["1-99"]["votes"] == 0 and buckets["1-99"]["longer_win_rate"] is None


def test_length_bias_bca_interval_is_accelerated_like_scipys():
    # One vote per prompt: the cluster bootstrap is the ordinary bootstrap of the mean score, so with
    # the same draws it must give scipy's BCa interval, acceleration included (a skewed case, where
    # the acceleration moves the bounds). A bias-corrected-only interval misses it.
    rng = np.random.default_rng(3)
    longer_won = rng.random(60) < 0.85
    frame = votes_frame([(f"p{i}", "A", "B", "A" if won else "B") for i, won in enumerate(longer_won)])
    frame["length_a"], frame["length_b"] = 900, 100
    bias = analyze(frame, n_boot=2000, seed=5, categories=False)["length_bias"]
    reference = scipy_stats.bootstrap(
        (longer_won.astype(float),), np.mean, n_resamples=2000, rng=np.random.default_rng(5), method="BCa"
    )
    assert bias["ci_method"] == "bca"
    assert bias["ci_low"] == pytest.approx(100 * reference.confidence_interval.low)
    assert bias["ci_high"] == pytest.approx(100 * reference.confidence_interval.high)
