"""Judge-versus-raters statistics and content-report rates: known values, and intervals that behave."""

from __future__ import annotations

import numpy as np
import pytest

from comparisons.stats.flags import flag_rate, wilson_interval
from comparisons.stats.judges import (
    FIRST,
    NO_VERDICT,
    SECOND,
    TIE,
    cohen_kappa,
    disagreement,
    judge_pair_stats,
    majority_verdict,
    verdict_of_score,
)


def test_cohen_kappa_matches_the_textbook_example():
    # Two raters, 50 units, yes/no: 20 both yes, 15 both no, 5 + 10 disagreements. p_o = 0.7, p_e = 0.5, kappa 0.4.
    a = np.array([FIRST] * 20 + [SECOND] * 15 + [FIRST] * 5 + [SECOND] * 10)
    b = np.array([FIRST] * 20 + [SECOND] * 15 + [SECOND] * 5 + [FIRST] * 10)
    assert cohen_kappa(a, b) == pytest.approx(0.4)


def test_kappa_is_one_for_perfect_agreement_and_none_when_undefined():
    a = np.array([FIRST, SECOND, TIE, FIRST])
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert cohen_kappa(np.array([FIRST] * 5), np.array([FIRST] * 5)) is None  # chance agreement is already 1
    assert cohen_kappa(np.array([], dtype=int), np.array([], dtype=int)) is None


def test_verdicts_from_scores_and_majorities():
    assert list(verdict_of_score(np.array([1.0, 0.0, 0.5, 0.7, 0.2]))) == [FIRST, SECOND, TIE, FIRST, SECOND]
    counts = np.array([[2, 1, 0], [1, 1, 1], [0, 0, 0], [0, 0, 3]])
    assert list(majority_verdict(counts)) == [FIRST, NO_VERDICT, NO_VERDICT, TIE]


def test_a_judge_that_copies_the_raters_agrees_fully_and_one_that_flips_them_not_at_all():
    rng = np.random.default_rng(1)
    winners = rng.integers(0, 2, size=80)
    counts = np.zeros((80, 3), dtype=int)
    counts[np.arange(80), winners] = 3
    copying = np.where(winners == FIRST, 1.0, 0.0)
    same = judge_pair_stats(counts=counts, judge_score=copying, rng=np.random.default_rng(0), n_boot=500)
    assert same.agreement == 100.0 and same.kappa == pytest.approx(1.0)
    assert same.judge_win_rate == pytest.approx(same.raters_win_rate)
    flipped = judge_pair_stats(counts=counts, judge_score=1.0 - copying, rng=np.random.default_rng(0), n_boot=500)
    assert flipped.agreement == 0.0 and flipped.kappa < -0.9
    assert flipped.judge_win_rate == pytest.approx(100.0 - flipped.raters_win_rate)


def test_intervals_surround_the_estimates_and_shrink_with_more_prompts():
    def stats(n: int):
        rng = np.random.default_rng(n)
        winners = rng.integers(0, 2, size=n)
        counts = np.zeros((n, 3), dtype=int)
        counts[np.arange(n), winners] = 2
        # A judge that agrees 75% of the time.
        agree = rng.random(n) < 0.75
        score = np.where(agree == (winners == FIRST), 1.0, 0.0)
        return judge_pair_stats(counts=counts, judge_score=score, rng=np.random.default_rng(0), n_boot=1000)

    small, large = stats(40), stats(1000)
    for s in (small, large):
        assert s.agreement_ci_low <= s.agreement <= s.agreement_ci_high
        assert s.kappa_ci_low <= s.kappa <= s.kappa_ci_high
        assert s.judge_ci_low <= s.judge_win_rate <= s.judge_ci_high
    assert large.agreement_ci_high - large.agreement_ci_low < (small.agreement_ci_high - small.agreement_ci_low) / 2
    assert large.agreement == pytest.approx(75.0, abs=4.0)


def test_split_comparisons_are_left_out_of_agreement_but_kept_in_win_rates():
    counts = np.array([[2, 0, 0], [1, 1, 0], [0, 2, 0]])
    score = np.array([1.0, 0.5, 1.0])
    s = judge_pair_stats(counts=counts, judge_score=score, rng=np.random.default_rng(0), n_boot=0)
    assert (s.comparisons, s.agreement_units, s.split) == (3, 2, 1)
    assert s.agreement == 50.0
    assert s.judge_win_rate == pytest.approx(100 * 2.5 / 3)
    assert s.judge_ci_low is None and s.kappa_ci_low is None  # no bootstrap asked for


def test_disagreement_is_the_gap_between_mean_rater_score_and_judge_score():
    counts = np.array([[3, 0, 0], [0, 3, 0], [1, 1, 0], [0, 0, 0]])
    gaps = disagreement(counts=counts, judge_score=np.array([0.0, 0.0, 1.0, 1.0]))
    assert list(gaps[:3]) == [1.0, 0.0, 0.5] and np.isnan(gaps[3])


def test_wilson_interval_known_values_and_edges():
    low, high = wilson_interval(10, 100)
    assert low == pytest.approx(5.52, abs=0.01) and high == pytest.approx(17.44, abs=0.01)
    low, high = wilson_interval(0, 50)
    assert low == 0.0 and high == pytest.approx(7.13, abs=0.01)  # never a zero-width interval at a zero rate
    assert wilson_interval(0, 0) == (None, None)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    assert flag_rate(1, 4)["rate"] == 25.0
