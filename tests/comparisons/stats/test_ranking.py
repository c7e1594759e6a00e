"""Bradley–Terry ranking: hand cases, the likelihood equations, and what happens without an MLE."""

from __future__ import annotations

import math

import numpy as np
import pytest

from comparisons.stats import analyze, bt_fit
from comparisons.stats.ranking import Graph, mle_exists

from .helpers import pair_votes, votes_frame


def test_two_models_three_to_one():
    # A beats B 3 times out of 4: strengths 3 : 1, i.e. 400 * log10(3) = 190.8 Elo-like points apart.
    result = analyze(votes_frame(pair_votes("A", "B", 3, 1, 0)), n_boot=0)
    scores = {r["model"]: r["score"] for r in result["ranking"]}
    assert scores["A"] - scores["B"] == pytest.approx(400 * math.log10(3))
    assert scores["A"] + scores["B"] == pytest.approx(2000.0)  # mean log-strength 0 = score 1000
    assert [r["model"] for r in result["ranking"]] == ["A", "B"]
    assert result["settings"]["ranking_regularized"] is False


def test_ties_count_half_a_win_each():
    # 2 wins, 2 losses and 2 ties: an even match.
    result = analyze(votes_frame(pair_votes("A", "B", 2, 2, 2)), n_boot=0)
    assert [r["score"] for r in result["ranking"]] == pytest.approx([1000.0, 1000.0])


def test_fit_solves_the_likelihood_equations():
    # At the MLE each model's expected wins equal its observed wins.
    rng = np.random.default_rng(4)
    wins = rng.integers(1, 15, size=(6, 6)).astype(float)
    np.fill_diagonal(wins, 0)
    theta = bt_fit(wins)
    games = wins + wins.T
    expected = (games / (1 + np.exp(theta[None, :] - theta[:, None]))).sum(axis=1)
    assert expected == pytest.approx(wins.sum(axis=1))
    assert theta.mean() == pytest.approx(0.0, abs=1e-12)
    # Fitting a stack of tables at once gives the same answers as one by one.
    stacked = bt_fit(np.stack([wins, wins.T]))
    assert stacked[0] == pytest.approx(theta)
    assert stacked[1] == pytest.approx(bt_fit(wins.T))


def test_unbeaten_model_gets_a_regularised_finite_score():
    frame = votes_frame(pair_votes("A", "B", 5, 0, 0) + pair_votes("B", "C", 3, 2, 0, start=10))
    assert not mle_exists(np.array([[0, 5, 0], [0, 0, 3], [0, 2, 0]], dtype=float))
    result = analyze(frame, n_boot=200, seed=0)
    assert result["settings"]["ranking_regularized"] is True
    assert [r["model"] for r in result["ranking"]] == ["A", "B", "C"]
    assert all(np.isfinite(r["score"]) for r in result["ranking"])


def test_bootstrap_interval_brackets_the_score():
    frame = votes_frame(pair_votes("A", "B", 60, 30, 10) + pair_votes("B", "C", 50, 40, 10, start=200))
    ranking = analyze(frame, n_boot=500, seed=1)["ranking"]
    assert [r["model"] for r in ranking] == ["A", "B", "C"]
    for entry in ranking:
        assert entry["ci_low"] <= entry["score"] <= entry["ci_high"]


def test_batch_existence_check_agrees_with_one_fit_at_a_time():
    # Many fits on one graph at once (bootstrap replicates) against each fit checked on its own.
    rng = np.random.default_rng(0)
    wins = (rng.random((500, 4, 4)) < 0.35) * 1.0
    wins[:, np.arange(4), np.arange(4)] = 0
    everyone_played = ((wins + wins.transpose(0, 2, 1)).sum(axis=-1) > 0).all(axis=-1)
    wins = wins[everyone_played]
    first, second = np.triu_indices(4, k=1)
    graph = Graph.build(first, second, 4)
    batch = graph.mle_exists(wins[:, first, second], wins[:, second, first])
    assert batch.shape == (len(wins), 1)
    assert batch[:, 0].tolist() == [mle_exists(w) for w in wins]


def test_small_study_keeps_finite_ranking_intervals():
    # Six votes: many replicates lose the only tie or the only win, so their MLE does not exist; those
    # replicates are regularised like the point estimate instead of running off to the fit's bound.
    result = analyze(votes_frame(pair_votes("A", "B", 4, 1, 1)), n_boot=500, seed=0)
    assert result["settings"]["ranking_replicates_regularized"] > 0
    for entry in result["ranking"]:
        assert entry["ci_low"] <= entry["score"] <= entry["ci_high"]
        assert entry["ci_high"] - entry["ci_low"] < 1000
