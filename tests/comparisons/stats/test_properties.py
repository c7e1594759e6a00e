"""Properties that hold for any vote table (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comparisons.stats import analyze, bt_fit

from .helpers import votes_frame

VERDICTS = ("A", "B", "tie", "both_bad")

vote_lists = st.lists(
    st.tuples(st.integers(min_value=0, max_value=14), st.booleans(), st.sampled_from(VERDICTS)),
    min_size=1,
    max_size=60,
)


def build(votes, names=("A", "B")):
    rows = []
    for prompt, a_first, verdict in votes:
        model_a, model_b = (names[0], names[1]) if a_first else (names[1], names[0])
        winner = {"A": names[0], "B": names[1]}.get(verdict, verdict)
        rows.append((f"p{prompt}", model_a, model_b, winner))
    return votes_frame(rows)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(votes=vote_lists, ci=st.sampled_from(["percentile", "bca"]))
def test_swapping_the_models_gives_100_minus_the_win_rate(votes, ci):
    frame = build(votes)
    a_vs_b = analyze(frame, baseline="B", n_boot=200, seed=1, ci=ci, categories=False)["pairs"][0]
    b_vs_a = analyze(frame, baseline="A", n_boot=200, seed=1, ci=ci, categories=False)["pairs"][0]
    assert b_vs_a["win_rate"] == pytest.approx(100 - a_vs_b["win_rate"])
    assert (b_vs_a["wins"], b_vs_a["losses"], b_vs_a["ties"]) == (a_vs_b["losses"], a_vs_b["wins"], a_vs_b["ties"])
    assert b_vs_a["ci_method"] == a_vs_b["ci_method"]
    if a_vs_b["ci_method"] == "too_few_prompts":
        assert b_vs_a["ci_low"] is b_vs_a["ci_high"] is a_vs_b["ci_low"] is None
        return
    assert b_vs_a["ci_low"] == pytest.approx(100 - a_vs_b["ci_high"])
    assert b_vs_a["p_value"] == pytest.approx(a_vs_b["p_value"])
    # Renaming the models so that their alphabetical order flips changes nothing either.
    renamed = analyze(build(votes, names=("Z", "B")), baseline="B", n_boot=200, seed=1, ci=ci, categories=False)
    assert renamed["pairs"][0]["win_rate"] == pytest.approx(a_vs_b["win_rate"])
    assert renamed["pairs"][0]["ci_low"] == pytest.approx(a_vs_b["ci_low"])
    assert renamed["pairs"][0]["ci_high"] == pytest.approx(a_vs_b["ci_high"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(votes=vote_lists, ci=st.sampled_from(["percentile", "bca"]), seed=st.integers(0, 2**32 - 1))
def test_the_interval_contains_the_estimate_and_is_never_zero_width(votes, ci, seed):
    pair = analyze(build(votes), n_boot=300, seed=seed, ci=ci, categories=False)["pairs"][0]
    if pair["prompts"] < 2:
        assert pair["ci_method"] == "too_few_prompts" and pair["ci_low"] is None
        return
    assert pair["ci_method"] in {ci, "clopper_pearson"}
    assert pair["ci_low"] < pair["ci_high"]  # never a zero-width interval
    assert 0.0 <= pair["ci_low"] <= pair["win_rate"] + 1e-9
    assert pair["win_rate"] - 1e-9 <= pair["ci_high"] <= 100.0


@settings(max_examples=60, deadline=None)
@given(
    n_models=st.integers(min_value=2, max_value=6),
    games=st.integers(min_value=1, max_value=8),
    data=st.data(),
)
def test_bradley_terry_on_a_round_robin_orders_models_as_their_wins(n_models, games, data):
    # Every pair plays the same number of games; ties split half-half. The MLE's order is then the
    # order of total wins (ties counting half), equal totals giving equal scores.
    wins = np.zeros((n_models, n_models))
    for i in range(n_models):
        for j in range(i + 1, n_models):
            won = data.draw(st.integers(min_value=0, max_value=2 * games), label=f"{i}-{j}") / 2
            wins[i, j], wins[j, i] = won, games - won
    totals = wins.sum(axis=1)
    scores = bt_fit(wins, prior=0.0 if _mle_exists(wins) else 0.5)
    for i in range(n_models):
        for j in range(n_models):
            if totals[i] > totals[j]:
                assert scores[i] > scores[j]
            elif totals[i] == totals[j]:
                assert scores[i] == pytest.approx(scores[j], abs=1e-6)


def _mle_exists(wins):
    from comparisons.stats.ranking import mle_exists

    return mle_exists(wins)
