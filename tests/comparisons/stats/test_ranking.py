"""Bradley–Terry ranking: hand cases, the likelihood equations, and what happens without an MLE."""

from __future__ import annotations

import math

import numpy as np
import pytest

from comparisons.stats import analyze, bt_fit, format_text
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


def test_separate_groups_are_ranked_separately_and_said_to_be_incomparable():
    # A-B and C-D never met, directly or through another model: there is no offset between the groups.
    ab = pair_votes("A", "B", 30, 10, 0)
    cd = pair_votes("C", "D", 12, 28, 0, start=100)
    result = analyze(votes_frame(ab + cd), n_boot=300, seed=0)
    assert result["ranking_components"] == [["A", "B"], ["D", "C"]]
    by_model = {r["model"]: r for r in result["ranking"]}
    assert {m: r["component"] for m, r in by_model.items()} == {"A": 1, "B": 1, "C": 2, "D": 2}
    # Each group on its own: mean score 1000, and its scores do not move when the other group's votes do.
    assert by_model["A"]["score"] + by_model["B"]["score"] == pytest.approx(2000.0)
    assert by_model["C"]["score"] + by_model["D"]["score"] == pytest.approx(2000.0)
    changed = analyze(votes_frame(pair_votes("A", "B", 39, 1, 0) + cd), n_boot=0)
    moved = {r["model"]: r["score"] for r in changed["ranking"]}
    assert moved["C"] == pytest.approx(by_model["C"]["score"]) and moved["D"] == pytest.approx(by_model["D"]["score"])
    # Ranks count only models of the same group: both groups have a rank 1.
    assert (by_model["A"]["rank"], by_model["D"]["rank"]) == (1, 1)
    assert [r["model"] for r in result["ranking"]] == ["A", "B", "D", "C"]
    text = format_text(result)
    assert "cannot be compared with one of another group: group 1 (A, B); group 2 (D, C)" in text
    assert result["settings"]["ranking_connected"] is False


def test_rank_counts_only_models_whose_interval_lies_entirely_above():
    # A is far better than B and C, which are even: A is 1, B and C share rank 2 (their intervals overlap).
    frame = votes_frame(
        pair_votes("A", "B", 80, 20, 0)
        + pair_votes("A", "C", 80, 20, 0, start=100)
        + pair_votes("B", "C", 50, 50, 0, start=200)
    )
    ranking = {r["model"]: r for r in analyze(frame, n_boot=400, seed=0)["ranking"]}
    assert ranking["A"]["ci_low"] > max(ranking["B"]["ci_high"], ranking["C"]["ci_high"])
    assert (ranking["A"]["rank"], ranking["B"]["rank"], ranking["C"]["rank"]) == (1, 2, 2)
    # Without intervals (no bootstrap) a score is its own interval: ranks follow strictly higher scores.
    points = {r["model"]: r["rank"] for r in analyze(frame, n_boot=0)["ranking"]}
    assert points == {"A": 1, "B": 2, "C": 2}


def test_rank_of_a_model_below_two_overlapping_leaders():
    # Scores 1 > 2 > 3 with 1 and 2 overlapping and 3 below both: ranks 1, 1, 3.
    frame = votes_frame(
        pair_votes("A", "B", 52, 48, 0)
        + pair_votes("A", "C", 90, 10, 0, start=100)
        + pair_votes("B", "C", 90, 10, 0, start=200)
    )
    ranking = {r["model"]: r["rank"] for r in analyze(frame, n_boot=400, seed=0)["ranking"]}
    assert ranking == {"A": 1, "B": 1, "C": 3}


def test_hundreds_of_models_on_a_sparse_graph_solve_the_likelihood_equations():
    # 300 models: 299 meet one baseline only (a star), fitted from the pairs that met, never a
    # 300 x 300 table per bootstrap replicate. At the MLE every model's expected wins equal its wins.
    rng = np.random.default_rng(7)
    rows = []
    for i in range(1, 300):
        wins = int(rng.integers(3, 18))
        rows += pair_votes(f"m{i:03d}", "m000", wins, 20 - wins, 0, start=1000 * i)
    result = analyze(votes_frame(rows), baseline="m000", n_boot=200, seed=0, categories=False)
    assert len(result["ranking"]) == 300 and len(result["ranking_components"]) == 1
    score = {r["model"]: r["score"] for r in result["ranking"]}
    theta = {m: (s - 1000.0) / (400.0 / math.log(10.0)) for m, s in score.items()}
    for pair in result["pairs"]:
        gap = theta[pair["model"]] - theta[pair["baseline"]]
        assert pair["n"] / (1.0 + math.exp(-gap)) == pytest.approx(pair["wins"], abs=1e-6)
    for entry in result["ranking"]:
        assert entry["ci_low"] <= entry["score"] <= entry["ci_high"]


def test_many_separate_pairs_each_fitted_on_their_own():
    rows = []
    for i in range(150):
        rows += pair_votes(f"a{i:03d}", f"b{i:03d}", 3 + i % 10, 7, 2, start=100 * i)
    result = analyze(votes_frame(rows), n_boot=100, seed=0, categories=False)
    assert len(result["ranking_components"]) == 150
    score = {r["model"]: r["score"] for r in result["ranking"]}
    for i in range(150):
        won, lost = 3 + i % 10 + 1, 7 + 1  # ties count half a win each
        assert score[f"a{i:03d}"] - score[f"b{i:03d}"] == pytest.approx(400 * math.log10(won / lost))
        assert score[f"a{i:03d}"] + score[f"b{i:03d}"] == pytest.approx(2000.0)
