"""Adaptive pair routing: the router's choices, and what it does to the estimates, checked by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from comparisons.stats import routing
from comparisons.stats.ranking import ELO_SCALE, Graph, bt_fit_graph


def fit_of(score: list[float], games: list[float], n_models: int = 4) -> routing.Fit:
    first, second = routing.all_pairs(n_models)
    return routing.bt_fit_pairs(
        n_models=n_models, pair_first=first, pair_second=second, first_score=[score], games=[games]
    )


def test_the_fit_recovers_strengths_and_its_intervals_cover_them():
    rng = np.random.default_rng(3)
    truth = np.array([-0.6, -0.1, 0.2, 0.5])
    first, second = routing.all_pairs(4)
    games = np.full((300, 6), 200.0)
    score = rng.binomial(200, expit(truth[first] - truth[second]), size=(300, 6)).astype(float)
    fit = routing.bt_fit_pairs(n_models=4, pair_first=first, pair_second=second, first_score=score, games=games)
    assert np.allclose(fit.theta.sum(axis=1), 0.0)
    assert np.abs(fit.theta.mean(axis=0) - truth).max() < 0.02
    covered = (np.abs(fit.theta - truth) <= routing.Z95 * fit.sd).mean()
    assert 0.92 <= covered <= 0.98  # the normal intervals of the routing fit have their nominal 95%


def test_the_vote_goes_to_the_neighbours_whose_order_is_unsettled():
    # Models 0 < 1 < 2 < 3; 0-1 and 2-3 are far apart and well measured, 1 and 2 are close and barely met.
    # Pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3); the first model's wins.
    score = [20.0, 10.0, 5.0, 5.0, 10.0, 20.0]
    games = [400.0, 400.0, 400.0, 10.0, 400.0, 400.0]
    fit = fit_of(score, games)
    first, second = routing.all_pairs(4)
    probs = routing.probabilities(fit, pair_first=first, pair_second=second, explore=0.1)
    assert probs.sum() == pytest.approx(1.0)
    best = int(np.argmax(probs[0]))
    assert (first[best], second[best]) == (1, 2)
    assert probs[0, best] == pytest.approx(0.9 + 0.1 / 6)
    assert probs[0].min() == pytest.approx(0.1 / 6)  # every pair keeps a chance: the weights stay finite


def test_pairs_with_nothing_left_to_serve_get_no_votes():
    fit = fit_of([5.0] * 6, [10.0] * 6)
    first, second = routing.all_pairs(4)
    available = np.array([[True, False, True, False, False, False], [False] * 6])
    probs = routing.probabilities(
        routing.Fit(np.repeat(fit.theta, 2, 0), np.repeat(fit.cov, 2, 0)),
        pair_first=first,
        pair_second=second,
        available=available,
    )
    assert probs[0].sum() == pytest.approx(1.0)
    assert (probs[0][~available[0]] == 0).all()
    assert (probs[1] == 0).all()
    assert list(routing.choose(np.random.default_rng(0), probs)[1:]) == [-1]


def test_separated_needs_every_neighbour_interval_clear_of_zero():
    share = [0.269, 0.119, 0.047, 0.269, 0.119, 0.269]  # steps of one log-odds unit: 0 < 1 < 2 < 3
    many = fit_of([300 * s for s in share], [300.0] * 6)
    few = fit_of([3 * s for s in share], [3.0] * 6)
    assert routing.separated(many)[0] and not routing.separated(few)[0]
    assert not routing.models_apart(few)[0]


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="probability"):
        routing.ipw_totals(pair=np.array([0]), score=np.array([1.0]), probability=np.array([0.0]), n_pairs=1)


def simulate(mode: str, *, campaigns: int, budget: int, seed: int, batch: int = 20):
    """``campaigns`` simulated campaigns of 4 models (Elo 0, 40, 80, 200; no ties) under a routing mode.

    Returns per campaign and pair the plain win rate, the inverse-probability-weighted one, and the
    plain and weighted Bradley–Terry scores (Elo scale)."""
    rng = np.random.default_rng(seed)
    elo = np.array([0.0, 40.0, 80.0, 200.0])
    strength = (elo - elo.mean()) / ELO_SCALE
    first, second = routing.all_pairs(4)
    p_true = expit(strength[first] - strength[second])
    score, games = np.zeros((campaigns, 6)), np.zeros((campaigns, 6))
    w_score, w_games = np.zeros((campaigns, 6)), np.zeros((campaigns, 6))
    fit = routing.bt_fit_pairs(n_models=4, pair_first=first, pair_second=second, first_score=score, games=games)
    rows = np.repeat(np.arange(campaigns), batch)
    for _ in range(budget // batch):
        if mode == "uniform":
            probs = np.full((campaigns, 6), 1 / 6)
        else:
            probs = routing.probabilities(fit, pair_first=first, pair_second=second)
        cumulative = np.cumsum(probs, axis=1)
        picks = np.minimum((cumulative[:, None, :] <= rng.random((campaigns, batch, 1))).sum(axis=2), 5)
        outcome = (rng.random((campaigns, batch)) < p_true[picks]).astype(float)
        chance = np.take_along_axis(probs, picks, axis=1)
        np.add.at(score, (rows, picks.ravel()), outcome.ravel())
        np.add.at(games, (rows, picks.ravel()), 1.0)
        for c in range(campaigns):  # ipw_totals is per campaign, as the product calls it
            ws, wg = routing.ipw_totals(pair=picks[c], score=outcome[c], probability=chance[c], n_pairs=6)
            w_score[c] += ws
            w_games[c] += wg
        fit = routing.bt_fit_pairs(
            n_models=4, pair_first=first, pair_second=second, first_score=score, games=games, theta0=fit.theta
        )
    graph = Graph.build(first, second, 4)
    return {
        "truth_rate": 100 * p_true,
        "truth_elo": elo - elo.mean(),
        "rate": 100 * score / games,
        "weighted_rate": 100 * w_score / w_games,
        "bt": ELO_SCALE * bt_fit_graph(graph, score, games - score),
        "weighted_bt": ELO_SCALE * bt_fit_graph(graph, w_score, w_games - w_score),
    }


def z_scores(estimates: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean error over the simulated campaigns in units of its Monte Carlo standard error."""
    return (estimates.mean(axis=0) - truth) / (estimates.std(axis=0) / np.sqrt(len(estimates)))


@pytest.mark.slow
def test_weighted_estimates_stay_unbiased_under_adaptive_routing_and_plain_ones_do_not():
    # 500 campaigns of 1,200 votes each. Weighted by the inverse of the chance each vote's pair had of being
    # served, the win rates and Bradley–Terry scores average to the truth (within Monte Carlo error); the
    # plain ones drift (adaptive-sampling bias), which is why the weights are recorded. The same check on
    # uniform routing finds nothing, so it is the routing, not the check, that makes the difference.
    adaptive = simulate("adaptive", campaigns=500, budget=1200, seed=1)
    assert np.abs(z_scores(adaptive["weighted_rate"], adaptive["truth_rate"])).max() < 3.5
    assert np.abs(z_scores(adaptive["weighted_bt"], adaptive["truth_elo"])).max() < 3.5
    assert np.abs(z_scores(adaptive["rate"], adaptive["truth_rate"])).max() > 5
    assert np.abs(z_scores(adaptive["bt"], adaptive["truth_elo"])).max() > 5
    uniform = simulate("uniform", campaigns=500, budget=1200, seed=2)
    assert np.abs(z_scores(uniform["rate"], uniform["truth_rate"])).max() < 3.5
    assert np.abs(z_scores(uniform["weighted_rate"], uniform["truth_rate"])).max() < 3.5
