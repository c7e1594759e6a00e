"""The stopping rule: peeking at an ordinary interval after every vote against the anytime-valid sequence.

Each test simulates thousands of studies at once under a known truth, so the false-positive rates are
measured, not assumed."""

from __future__ import annotations

import numpy as np
import pytest

from comparisons.stats import sequential

Z95 = 1.959963984540054


def votes(rng: np.random.Generator, *, studies: int, length: int, win: float, ties: float = 0.1) -> np.ndarray:
    """Scores (1 win, 1/2 tie, 0 loss) of ``studies`` streams of ``length`` votes with mean ``win``."""
    u = rng.random((studies, length))
    return np.where(u < ties, 0.5, (u < ties + (1 - ties) * (win - ties / 2) / (1 - ties)).astype(float))


def naive_stops(x: np.ndarray, *, first_look: int = 10) -> np.ndarray:
    """Per stream: did "stop when the 95% interval leaves 50% out", checked after every vote, ever stop?"""
    n = np.arange(1, x.shape[1] + 1)
    mean = np.cumsum(x, axis=1) / n
    variance = np.maximum(np.cumsum(x**2, axis=1) / n - mean**2, 1e-12)
    out = np.abs(mean - 0.5) > Z95 * np.sqrt(variance / n)
    return out[:, first_look - 1 :].any(axis=1)


def test_peeking_at_an_ordinary_interval_finds_a_winner_between_equal_models_far_too_often():
    # 4,000 studies of two equally good models, 500 votes each, looked at after every vote from the 10th.
    x = votes(np.random.default_rng(11), studies=4000, length=500, win=0.5)
    naive = naive_stops(x).mean()
    anytime = sequential.rejects(x)[:, -1].mean()
    assert naive > 0.25  # measured: about 49%, ten times the 5% the interval promises
    assert anytime <= 0.05  # measured: about 4%
    # Looked at once, at the end, the ordinary interval is fine: the damage is done by the peeking.
    n = x.shape[1]
    once = np.abs(x.mean(axis=1) - 0.5) > Z95 * x.std(axis=1) / np.sqrt(n)
    assert once.mean() <= 0.065


def test_the_sequence_covers_any_true_win_rate_at_every_moment():
    rng = np.random.default_rng(12)
    for win in (0.2, 0.35, 0.8):
        x = votes(rng, studies=2000, length=400, win=win)
        assert sequential.rejects(x, win)[:, -1].mean() <= 0.05


def test_with_several_votes_per_prompt_the_units_are_comparisons():
    # Prompts differ a lot (a prompt favours one model or the other), k = 3 votes per comparison, the two
    # models equal on average over prompts. Comparisons complete in random order and their mean score is
    # one unit: the false-positive rate stays under 5%.
    rng = np.random.default_rng(13)
    studies, prompts, k = 3000, 300, 3
    lean = rng.beta(1.0, 1.0, size=(studies, prompts))  # each prompt's own chance that the first model wins
    units = rng.binomial(k, lean) / k
    assert sequential.rejects(units)[:, -1].mean() <= 0.05
    # Treating the 900 correlated votes as 900 independent units is what the comparison units avoid.
    wins = rng.random((studies, prompts, k)) < lean[..., None]
    flat = wins.reshape(studies, prompts * k).astype(float)
    assert sequential.rejects(flat)[:, -1].mean() > 0.05


def test_a_real_difference_is_found_and_the_interval_says_which_side():
    rng = np.random.default_rng(14)
    x = votes(rng, studies=1000, length=500, win=0.62)
    assert sequential.rejects(x)[:, -1].mean() > 0.8
    seq = sequential.confidence_sequence(x[0])
    assert seq.units == 500
    assert seq.low <= 62.0 <= seq.high
    assert seq.low <= 100 * x[0].mean() <= seq.high
    assert seq.decisive == (seq.low > 50.0 or seq.high < 50.0)
    assert seq.leader == (1 if seq.decisive else 0)
    below = sequential.confidence_sequence(1.0 - x[0])
    assert below.leader == -seq.leader
    assert below.low == pytest.approx(100 - seq.high, abs=0.25) and below.high == pytest.approx(100 - seq.low, abs=0.25)


def test_the_sequence_is_wider_than_a_one_look_interval_and_empty_streams_have_none():
    x = votes(np.random.default_rng(15), studies=1, length=2000, win=0.55)[0]
    seq = sequential.confidence_sequence(x)
    fixed = 2 * Z95 * 100 * x.std() / np.sqrt(len(x))
    assert fixed < seq.high - seq.low < 4 * fixed
    empty = sequential.confidence_sequence(np.array([]))
    assert empty.units == 0 and np.isnan(empty.low) and not empty.decisive
