"""Adaptive pair routing: which pair of models the next vote should compare to settle the ranking soonest.

The ranking is a Bradley–Terry fit on the votes per model pair so far. Its uncertainty, for routing, is how
far the 95% interval of each neighbour pair's difference (models next to each other in the current order)
still reaches across zero: the ranking is settled when every neighbour pair's interval is separated from it.
One more vote on pair (i, j) adds p(1 - p) (e_i - e_j)(e_i - e_j)^T to the Fisher information (p the fitted
chance that i beats j), which shrinks the covariance by a rank-one update (Sherman–Morrison). The router
sends the vote to the pair whose update shrinks that remaining overlap most (a one-step look-ahead, in the
spirit of Chatbot Arena's active sampling), and with probability ``explore`` to a pair drawn uniformly, so
every pair keeps a chance of being served and far-apart pairs still get some votes.

Unbiasedness. Routing picks which *pair* is compared next from the votes so far; it never touches a vote's
outcome. That is not enough for plain averages: a pair whose first votes happened to look decisive gets fewer
votes afterwards and keeps its extreme estimate, so unweighted win rates drift away from 50% and Bradley–Terry
scores spread out (the adaptive-sampling bias; measured in tests/comparisons/stats/test_routing.py: about
1.5 points of win rate at 400 votes over 6 pairs, 0.4 at 2,000). Each vote therefore records the probability
its pair had of being served (``probabilities``); weighting votes by its inverse (``ipw_totals``, the
Horvitz–Thompson idea; Chatbot Arena weights its Bradley–Terry fit the same way, Chiang et al. 2024, §5)
gives win rates and Bradley–Terry scores that the same test finds unbiased. The price is variance: the
weighted estimates are noisier than the plain ones, most for pairs served mostly by exploration.

Everything is vectorized over S independent campaigns (the benchmark and the tests simulate hundreds at
once); the product calls it with S = 1. Pure numpy: no Django.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

Z95 = 1.959963984540054
# Virtual ties added to every candidate pair, so the fit exists from the first vote (an unbeaten model has no
# finite maximum-likelihood score); after a few dozen votes per pair their pull is negligible.
ROUTING_PRIOR = 0.5
DEFAULT_EXPLORE = 0.1


@dataclass(frozen=True)
class Fit:
    """Bradley–Terry log-strengths ``theta`` (S, M), mean 0, and their covariance ``cov`` (S, M, M)."""

    theta: np.ndarray
    cov: np.ndarray

    @property
    def sd(self) -> np.ndarray:
        return np.sqrt(np.maximum(np.diagonal(self.cov, axis1=1, axis2=2), 0.0))


def bt_fit_pairs(
    *,
    n_models: int,
    pair_first: np.ndarray,
    pair_second: np.ndarray,
    first_score: np.ndarray,
    games: np.ndarray,
    prior: float = ROUTING_PRIOR,
    theta0: np.ndarray | None = None,
    iterations: int = 25,
) -> Fit:
    """Fit S campaigns at once from per-pair totals: ``first_score`` (S, K) wins of pair k's first model plus
    half its ties, ``games`` (S, K) votes. ``prior`` virtual ties are added to every pair. Newton's method on
    the K pairs (small M: the dense M × M Hessian per campaign is cheap); ``theta0`` warm-starts it."""
    first_score = np.atleast_2d(np.asarray(first_score, dtype=float)) + 0.5 * prior
    games = np.atleast_2d(np.asarray(games, dtype=float)) + prior
    n_sims, n_pairs = games.shape
    incidence = np.zeros((n_pairs, n_models))
    incidence[np.arange(n_pairs), pair_first] = 1.0
    incidence[np.arange(n_pairs), pair_second] = -1.0
    centre = np.full((n_models, n_models), 1.0 / n_models)
    theta = np.zeros((n_sims, n_models)) if theta0 is None else np.array(theta0, dtype=float)
    for _ in range(iterations):
        prob = expit(theta @ incidence.T)
        gradient = (first_score - games * prob) @ incidence
        weight = games * prob * (1.0 - prob)
        hessian = np.einsum("sk,ki,kj->sij", weight, incidence, incidence)
        # The Laplacian is singular along the all-ones direction; adding its projector pins the mean at 0.
        step = np.linalg.solve(hessian + centre, gradient[..., None])[..., 0]
        step *= np.minimum(1.0, 2.0 / np.maximum(np.abs(step).max(axis=1, keepdims=True), 1e-300))
        theta = theta + step
        theta -= theta.mean(axis=1, keepdims=True)
        if np.abs(step).max() < 1e-9:
            break
    prob = expit(theta @ incidence.T)
    weight = games * prob * (1.0 - prob)
    hessian = np.einsum("sk,ki,kj->sij", weight, incidence, incidence)
    cov = np.linalg.inv(hessian + centre) - centre  # the pseudo-inverse on the mean-0 subspace
    return Fit(theta=theta, cov=cov)


def _neighbours(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (S, M - 1) of each model in the fitted order (strongest first) and of the model just below it."""
    order = np.argsort(-theta, axis=-1)
    return order[..., :-1], order[..., 1:]


def neighbour_intervals(fit: Fit, *, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """(S, M - 1) gaps theta_a - theta_b (>= 0) between neighbours a above b in the fitted order, and the
    half-widths of their 95% intervals, z sd(theta_a - theta_b)."""
    upper, lower = _neighbours(fit.theta)
    rows = np.arange(fit.theta.shape[0])[:, None]
    gap = fit.theta[rows, upper] - fit.theta[rows, lower]
    variance = fit.cov[rows, upper, upper] + fit.cov[rows, lower, lower] - 2.0 * fit.cov[rows, upper, lower]
    return gap, z * np.sqrt(np.maximum(variance, 0.0))


def separated(fit: Fit, *, z: float = Z95) -> np.ndarray:
    """Per campaign: does the 95% interval of every neighbour pair's difference (in the fitted order) leave 0
    out, that is, is each model's place above the next one settled?"""
    gap, half = neighbour_intervals(fit, z=z)
    return (gap > half).all(axis=1)


def models_apart(fit: Fit, *, z: float = Z95) -> np.ndarray:
    """Per campaign: are the models' own 95% intervals (mean-0 scale) apart for every two neighbours? Stricter
    than ``separated``: it is what a reader of per-model intervals sees."""
    upper, lower = _neighbours(fit.theta)
    rows = np.arange(fit.theta.shape[0])[:, None]
    sd = fit.sd
    gap = fit.theta[rows, upper] - fit.theta[rows, lower]
    return (gap > z * (sd[rows, upper] + sd[rows, lower])).all(axis=1)


def lookahead_gain(fit: Fit, *, pair_first: np.ndarray, pair_second: np.ndarray, z: float = Z95) -> np.ndarray:
    """(S, K): how much one more vote on each pair would shrink the overlap left in the current order, the sum
    over neighbours of max(0, half-width of the difference's interval - gap).

    A vote's expected Fisher information is p(1 - p) along v = e_i - e_j; after it the covariance is
    cov - s (cov v)(cov v)^T with s = info / (1 + info v' cov v) (Sherman–Morrison), so the variance of
    neighbour contrast c = e_a - e_b drops by s (c' cov v)^2. The scores are held at their current values.
    A tiny share of the contrasts' variance is added so that, once every neighbour pair is apart, the vote
    still goes where it teaches most."""
    theta, cov = fit.theta, fit.cov
    n_sims, n_models = theta.shape
    n_pairs = len(pair_first)
    direction = np.zeros((n_pairs, n_models))
    direction[np.arange(n_pairs), pair_first] = 1.0
    direction[np.arange(n_pairs), pair_second] = -1.0
    prob = expit(theta @ direction.T)  # (S, K)
    info = prob * (1.0 - prob)
    cov_dir = np.einsum("sij,kj->ski", cov, direction)  # (S, K, M): cov v per pair
    quad = np.einsum("ski,ki->sk", cov_dir, direction)  # v' cov v
    shrink = info / (1.0 + info * quad)  # (S, K)
    upper, lower = _neighbours(theta)
    rows = np.arange(n_sims)[:, None]
    gap = theta[rows, upper] - theta[rows, lower]  # (S, M - 1)
    variance = cov[rows, upper, upper] + cov[rows, lower, lower] - 2.0 * cov[rows, upper, lower]
    shape = (n_sims, n_pairs, n_models - 1)
    contrast = np.take_along_axis(cov_dir, np.broadcast_to(upper[:, None, :], shape), axis=2) - np.take_along_axis(
        cov_dir, np.broadcast_to(lower[:, None, :], shape), axis=2
    )  # c' cov v, (S, K, M - 1)
    new_variance = variance[:, None, :] - shrink[..., None] * contrast**2

    def remaining(var: np.ndarray, gaps: np.ndarray) -> np.ndarray:
        return (np.maximum(0.0, z * np.sqrt(np.maximum(var, 0.0)) - gaps) + 1e-3 * var).sum(axis=-1)

    return remaining(variance, gap)[:, None] - remaining(new_variance, gap[:, None, :])


def probabilities(
    fit: Fit,
    *,
    pair_first: np.ndarray,
    pair_second: np.ndarray,
    available: np.ndarray | None = None,
    explore: float = DEFAULT_EXPLORE,
) -> np.ndarray:
    """(S, K): the chance that the next vote goes to each pair under adaptive routing.

    ``1 - explore`` on the pair with the largest look-ahead gain (shared equally among exact ties), ``explore``
    spread evenly over all pairs. ``available`` (S, K) rules pairs out (no comparison left to serve); a row
    with no pair available is all zeros."""
    gain = lookahead_gain(fit, pair_first=pair_first, pair_second=pair_second)
    n_sims, n_pairs = gain.shape
    open_ = np.ones((n_sims, n_pairs), dtype=bool) if available is None else np.asarray(available, dtype=bool)
    gain = np.where(open_, gain, -np.inf)
    best = open_ & (gain >= gain.max(axis=1, keepdims=True) - 1e-12)
    count_open = open_.sum(axis=1, keepdims=True)
    count_best = np.maximum(best.sum(axis=1, keepdims=True), 1)
    share = (1.0 - explore) * best / count_best + explore * open_ / np.maximum(count_open, 1)
    return np.where(count_open > 0, share, 0.0)


def choose(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One pair index per campaign drawn from ``probs`` (S, K); -1 where no pair is available."""
    cumulative = np.cumsum(probs, axis=1)
    total = cumulative[:, -1]
    draw = rng.random(len(probs)) * total
    index = (cumulative <= draw[:, None]).sum(axis=1)
    return np.where(total > 0, np.minimum(index, probs.shape[1] - 1), -1)


def ipw_totals(
    *, pair: np.ndarray, score: np.ndarray, probability: np.ndarray, n_pairs: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, inverse-probability-weighted totals of votes: (weighted score, weighted votes).

    Vote i went to pair ``pair[i]``, which had probability ``probability[i]`` of being served, and scored
    ``score[i]`` (1 first model wins, 1/2 tie, 0). Each weighted sum, divided by the number of votes cast in
    all, is an unbiased estimate of what one vote on that pair would score (resp. 1), whatever routing did;
    their ratio is the weighted win rate, and a Bradley–Terry fit on the weighted totals is the weighted fit."""
    pair = np.asarray(pair, dtype=np.int64)
    probability = np.asarray(probability, dtype=float)
    if not (np.all(np.isfinite(probability)) and (probability > 0).all() and (probability <= 1).all()):
        raise ValueError("Every vote needs the probability (above 0, at most 1) that its pair had of being served.")
    weight = 1.0 / probability
    return (
        np.bincount(pair, weights=weight * np.asarray(score, dtype=float), minlength=n_pairs),
        np.bincount(pair, weights=weight, minlength=n_pairs),
    )


def all_pairs(n_models: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i, j), i < j, of ``n_models`` models, in lexicographic order."""
    first, second = np.triu_indices(n_models, k=1)
    return first.astype(np.int64), second.astype(np.int64)
