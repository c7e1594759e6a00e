"""Bradley–Terry ranking of all models, fitted by maximum likelihood, with bootstrap CIs over prompts.

Model i beats model j with probability s_i / (s_i + s_j). A tie counts as half a win for each side.
Scores are reported on an Elo-like scale: ``1000 + 400 * log10(s_i)``, so a 400-point gap means 10:1
odds.

Only models linked by a chain of comparisons can be compared: the likelihood says nothing about the
offset between two groups of models that never met. Each connected component of the comparison
graph is therefore fitted and ranked on its own, with its own mean log-strength 0 (mean score 1000),
and the output says which models belong together.

The fit works on the pairs that met only (the edges of the comparison graph), never on a models ×
models matrix, so memory and time grow with the number of pairs, not with its square. Newton's
method on the concave log-likelihood, vectorized over any number of bootstrap replicates at once:
the Hessian is a weighted graph Laplacian, and each Newton step is solved by conjugate gradients
(Jacobi-preconditioned) with edge-wise products; components do not interact, so fitting them in one
block-diagonal system is fitting them separately.

The maximum-likelihood estimate exists only when, within a component, every model has beaten (or
tied) every group of other models at least once (the "who beat whom" graph is strongly connected).
When it does not, the fit adds ``prior`` virtual ties to every pair of that component that met and
says so (``regularized``); the effect on a pair with hundreds of votes is negligible, and it keeps an
unbeaten model's score finite. Bootstrap replicates in which the MLE does not exist get the same
prior (``replicates_regularized`` counts them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.special import expit

from .bootstrap import num, percentile_bounds

ELO_SCALE = 400.0 / np.log(10.0)
ELO_BASE = 1000.0
DEFAULT_PRIOR = 0.5
# Log-strengths are kept within this range of the mean: a model that never won is "very weak", not -inf.
_LOG_BOUND = 30.0
_MAX_STEP = 2.0
# Score differences below this (Elo-like points) are rounding, not one interval lying above another.
_RANK_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Graph:
    """The comparison graph: edge k joins models ``first[k]`` and ``second[k]``; ``component`` per model."""

    n_models: int
    first: np.ndarray
    second: np.ndarray
    component: np.ndarray
    n_components: int

    @classmethod
    def build(cls, first: np.ndarray, second: np.ndarray, n_models: int) -> Graph:
        """Components numbered by size (largest first), then by their first model's index."""
        first, second = np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
        adjacency = sparse.csr_matrix((np.ones(len(first)), (first, second)), shape=(n_models, n_models))
        n_components, labels = connected_components(adjacency, directed=False)
        sizes = np.bincount(labels, minlength=n_components)
        first_member = np.full(n_components, n_models)
        np.minimum.at(first_member, labels, np.arange(n_models))
        order = np.lexsort((first_member, -sizes))
        renumber = np.empty(n_components, dtype=np.int64)
        renumber[order] = np.arange(n_components)
        return cls(n_models, first, second, renumber[labels], n_components)

    def incidence(self) -> sparse.csr_matrix:
        """(K, M): +1 at each edge's first model, -1 at its second."""
        n_edges = len(self.first)
        rows = np.repeat(np.arange(n_edges), 2)
        cols = np.stack([self.first, self.second], axis=1).ravel()
        values = np.tile([1.0, -1.0], n_edges)
        return sparse.csr_matrix((values, (rows, cols)), shape=(n_edges, self.n_models))

    def mle_exists(self, first_score: np.ndarray, second_score: np.ndarray) -> np.ndarray:
        """Per fit (rows of the (F, K) scores) and component: does the MLE exist? An (F, C) boolean array.

        The MLE exists in a component when the graph "i won or tied against j", restricted to models
        that played in that fit, is strongly connected. Fits in which every edge of a component went
        both ways need no graph search.
        """
        first_score, second_score = np.atleast_2d(first_score), np.atleast_2d(second_score)
        n_fits = first_score.shape[0]
        edge_component = self.component[self.first]
        both_ways = (first_score > 0) & (second_score > 0)
        one_sided = np.zeros((n_fits, self.n_components), dtype=bool)
        for fit in np.flatnonzero(~both_ways.all(axis=1)):
            one_sided[fit, np.unique(edge_component[~both_ways[fit]])] = True
        exists = ~one_sided
        for fit in np.flatnonzero(one_sided.any(axis=1)):
            wins_first, wins_second = first_score[fit] > 0, second_score[fit] > 0
            rows = np.concatenate([self.first[wins_first], self.second[wins_second]])
            cols = np.concatenate([self.second[wins_first], self.first[wins_second]])
            beat = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(self.n_models, self.n_models))
            _, strong = connected_components(beat, directed=True, connection="strong")
            played = np.zeros(self.n_models, dtype=bool)
            met = (first_score[fit] + second_score[fit]) > 0
            played[self.first[met]] = played[self.second[met]] = True
            pairs = np.unique(np.stack([self.component[played], strong[played]], axis=1), axis=0)
            groups_per_component = np.bincount(pairs[:, 0], minlength=self.n_components)
            exists[fit] = groups_per_component <= 1
        return exists


def bt_fit_graph(
    graph: Graph,
    first_score: np.ndarray,
    second_score: np.ndarray,
    *,
    prior: np.ndarray | float = 0.0,
    max_iter: int = 200,
    tol: float = 1e-10,
) -> np.ndarray:
    """Log-strengths of F independent fits on one graph: scores (F, K) -> (F, M), mean 0 per component.

    ``first_score[f, k]`` is edge k's first model's wins plus half the ties in fit f. ``prior`` (a
    scalar or an (F, C) array, per fit and component) virtual ties are added to every edge that met
    in that fit. Models with no comparison in a fit get NaN.
    """
    first_score = np.atleast_2d(np.asarray(first_score, dtype=float))
    second_score = np.atleast_2d(np.asarray(second_score, dtype=float))
    n_fits, n_models = first_score.shape[0], graph.n_models
    games = first_score + second_score
    met = games > 0
    edge_component = graph.component[graph.first]
    prior_edge = np.broadcast_to(np.asarray(prior, dtype=float), (n_fits, graph.n_components))[:, edge_component]
    wins = first_score + 0.5 * prior_edge * met
    games = games + prior_edge * met
    incidence = graph.incidence()
    transposed = incidence.T.tocsr()
    touches = abs(transposed)  # (M, K): 1 where the model is one of the edge's two
    played = (touches @ met.T.astype(float)).T > 0  # (F, M)
    member = sparse.csr_matrix(
        (np.ones(n_models), (np.arange(n_models), graph.component)), shape=(n_models, graph.n_components)
    )
    counts = np.asarray((member.T @ played.T.astype(float)).T)  # (F, C): models that played, per component
    theta = np.zeros((n_fits, n_models))

    def laplacian(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return (transposed @ (weight * (incidence @ x.T).T).T).T

    def centred(x: np.ndarray) -> np.ndarray:
        x = np.where(played, x, 0.0)
        sums = np.asarray((member.T @ x.T).T)
        means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        return np.where(played, x - means[:, graph.component], 0.0)

    for _ in range(max_iter):
        prob = expit((incidence @ theta.T).T)  # (F, K): first beats second
        residual = wins - games * prob
        gradient = np.where(played, (transposed @ residual.T).T, 0.0)
        weight = games * prob * (1.0 - prob)
        step = _conjugate_gradients(lambda x, w=weight: laplacian(x, w), gradient, touches @ weight.T)
        biggest = np.max(np.abs(step), axis=1, keepdims=True)
        step = step * np.minimum(1.0, _MAX_STEP / np.maximum(biggest, 1e-300))
        new = np.clip(centred(theta + step), -_LOG_BOUND, _LOG_BOUND)
        change = np.max(np.abs(new - theta)) if new.size else 0.0
        theta = new
        if change < tol:
            break
    return np.where(played, theta, np.nan)


def _conjugate_gradients(apply, rhs: np.ndarray, degree: np.ndarray, *, rtol: float = 1e-12) -> np.ndarray:
    """Solve L x = rhs for each row (L a graph Laplacian given by ``apply``), Jacobi-preconditioned.

    ``degree`` is (M, F), the diagonal of each row's L. The right-hand side sums to 0 on every
    component, so the singular system is consistent; the constant offset is removed by the caller.
    """
    inverse = np.where(degree.T > 0, 1.0 / np.maximum(degree.T, 1e-300), 0.0)
    x = np.zeros_like(rhs)
    r = rhs.copy()
    z = inverse * r
    p = z.copy()
    rz = (r * z).sum(axis=1)
    target = rtol * np.maximum(np.sqrt((rhs * rhs).sum(axis=1)), 1e-300)
    for _ in range(4 * rhs.shape[1] + 50):
        active = np.sqrt((r * r).sum(axis=1)) > target
        if not active.any():
            break
        q = apply(p)
        pq = (p * q).sum(axis=1)
        alpha = np.where(active & (pq > 0), rz / np.where(pq > 0, pq, 1.0), 0.0)
        x += alpha[:, None] * p
        r -= alpha[:, None] * q
        z = inverse * r
        rz_new = (r * z).sum(axis=1)
        beta = np.where(rz > 0, rz_new / np.where(rz > 0, rz, 1.0), 0.0)
        p = z + beta[:, None] * p
        rz = rz_new
    return x


def _edges_of(wins: np.ndarray) -> tuple[Graph, np.ndarray, np.ndarray]:
    """A dense (F, M, M) stack of wins as a graph (the pairs that met in any fit) and (F, K) scores."""
    games = (wins + np.swapaxes(wins, -1, -2)).sum(axis=0)
    first, second = np.nonzero(np.triu(games > 0, k=1))
    graph = Graph.build(first, second, wins.shape[-1])
    return graph, wins[:, first, second], wins[:, second, first]


def bt_fit(wins: np.ndarray, *, prior: float = 0.0, max_iter: int = 200, tol: float = 1e-10) -> np.ndarray:
    """Log-strengths of a Bradley–Terry model from a dense ``wins`` (..., M, M), wins[..., i, j] = i over j.

    Ties are expected already split as half a win to each side. Leading dimensions are independent
    fits done together. ``prior`` virtual ties are added to every pair that met. Models with no
    comparison in a fit get NaN; each connected component has mean log-strength 0. A convenience
    over ``bt_fit_graph`` for small tables.
    """
    wins = np.asarray(wins, dtype=float)
    stack = wins.reshape(-1, *wins.shape[-2:])
    graph, first_score, second_score = _edges_of(stack)
    theta = bt_fit_graph(graph, first_score, second_score, prior=prior, max_iter=max_iter, tol=tol)
    return theta.reshape(wins.shape[:-1])


def mle_exists(wins: np.ndarray) -> bool:
    """True when the Bradley–Terry MLE of a dense (M, M) wins table exists in every component."""
    graph, first_score, second_score = _edges_of(np.asarray(wins, dtype=float)[None])
    return bool(graph.mle_exists(first_score, second_score).all())


def to_elo(log_strength: np.ndarray) -> np.ndarray:
    return ELO_BASE + ELO_SCALE * log_strength


def interval_ranks(score: np.ndarray, low: np.ndarray, high: np.ndarray, component: np.ndarray) -> np.ndarray:
    """Rank = 1 + the number of models of the same component whose interval lies entirely above this one's.

    Chatbot Arena's convention: models whose intervals overlap share a rank. A model without an
    interval (no bootstrap) counts as the point interval [score, score].
    """
    low = np.where(np.isnan(low), score, low)
    high = np.where(np.isnan(high), score, high)
    ranks = np.ones(len(score), dtype=np.int64)
    for c in np.unique(component):
        members = np.flatnonzero(component == c)
        member_low, member_high = low[members], high[members]
        # For each member, count members whose lower bound exceeds its upper bound.
        ordered = np.sort(member_low)
        above = len(members) - np.searchsorted(ordered, member_high + _RANK_TOLERANCE, side="right")
        ranks[members] = 1 + above
    return ranks


@dataclass(frozen=True)
class Ranking:
    models: list[str]
    score: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    component: np.ndarray
    n_components: int
    regularized: bool
    prior: float
    replicates_regularized: int = 0

    @property
    def connected(self) -> bool:
        return self.n_components <= 1

    def components(self) -> list[list[str]]:
        """The model names of each component, best first within it, largest component first."""
        order = self._order()
        return [[self.models[i] for i in order if self.component[i] == c] for c in range(self.n_components)]

    def _order(self) -> np.ndarray:
        score = np.where(np.isnan(self.score), -np.inf, self.score)
        return np.lexsort((np.arange(len(self.models)), -score, self.component))

    def entries(self) -> list[dict]:
        """One entry per model: by component, best first; ``rank`` counts only models above it within its component."""
        ranks = interval_ranks(self.score, self.ci_low, self.ci_high, self.component)
        return [
            {
                "rank": int(ranks[i]),
                "model": self.models[i],
                "score": num(self.score[i]),
                "ci_low": num(self.ci_low[i]),
                "ci_high": num(self.ci_high[i]),
                "component": int(self.component[i]) + 1,
            }
            for i in self._order()
        ]


def ranking_compute(
    *,
    models: list[str],
    pair_first: np.ndarray,
    pair_second: np.ndarray,
    first_score: np.ndarray,
    second_score: np.ndarray,
    replicate_first: np.ndarray,
    replicate_second: np.ndarray,
    confidence: float = 0.95,
    prior: float | None = None,
) -> Ranking:
    """Bradley–Terry scores (Elo-like scale, mean 1000 per component) with percentile bootstrap CIs.

    ``first_score[k]`` is pair k's first model's wins plus half the ties, ``second_score[k]`` the
    second's; ``replicate_*`` are the same per bootstrap replicate, (B, K). ``prior=None`` picks 0
    (plain MLE) in each component where the MLE exists and DEFAULT_PRIOR in the others.
    """
    graph = Graph.build(pair_first, pair_second, len(models))
    if prior is None:
        exists = graph.mle_exists(first_score, second_score)[0]
        component_prior = np.where(exists, 0.0, DEFAULT_PRIOR)
    else:
        component_prior = np.full(graph.n_components, float(prior))
    score = to_elo(bt_fit_graph(graph, first_score, second_score, prior=component_prior[None, :])[0])
    replicates_regularized = 0
    low = high = np.full(len(models), np.nan)
    if replicate_first.shape[0]:
        # A replicate in which some model is unbeaten has no MLE; like the point estimate, it gets the
        # weak prior, so CI bounds stay finite instead of running off to the fit's limit.
        replicate_prior = np.broadcast_to(component_prior, (replicate_first.shape[0], graph.n_components)).copy()
        unprotected = component_prior < DEFAULT_PRIOR
        if unprotected.any():
            broken = ~graph.mle_exists(replicate_first, replicate_second) & unprotected[None, :]
            replicates_regularized = int(broken.any(axis=1).sum())
            replicate_prior[broken] = DEFAULT_PRIOR
        boot = to_elo(bt_fit_graph(graph, replicate_first, replicate_second, prior=replicate_prior))
        low, high = percentile_bounds(boot, confidence)
    return Ranking(
        models=list(models),
        score=score,
        ci_low=low,
        ci_high=high,
        component=graph.component,
        n_components=graph.n_components,
        regularized=bool((component_prior > 0).any()),
        prior=float(component_prior.max()) if component_prior.size else 0.0,
        replicates_regularized=replicates_regularized,
    )


def winrate_matrix(models: list[str], pair_first, pair_second, win_rate) -> list[list[float | None]]:
    """Row model's win rate (percent, ties half) against the column model; None where they never met."""
    n_models = len(models)
    matrix: list[list[float | None]] = [[None] * n_models for _ in range(n_models)]
    for i, j, rate in zip(pair_first, pair_second, win_rate, strict=True):
        if not np.isnan(rate):
            matrix[i][j] = float(rate)
            matrix[j][i] = float(100.0 - rate)
    return matrix
