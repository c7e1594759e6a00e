"""Bradley–Terry ranking of all models, fitted by maximum likelihood, with bootstrap CIs over prompts.

Model i beats model j with probability s_i / (s_i + s_j). A tie counts as half a win for each side.
The fit is Newton's method on the log-likelihood, vectorized over any number of bootstrap replicates
at once. Scores are reported on an Elo-like scale: ``1000 + 400 * log10(s_i)`` with the log-strengths
centred on mean 0, so the average model scores 1000 and a 400-point gap means 10:1 odds.

The maximum-likelihood estimate exists only when every model has beaten (or tied) every group of
other models at least once (the "who beat whom" graph is strongly connected). When it does not, the
fit adds ``prior`` virtual ties to every pair that met and says so (``regularized``); the effect on a
pair with hundreds of votes is negligible, and it keeps an unbeaten model's score finite. Bootstrap
replicates in which the MLE does not exist get the same prior (``replicates_regularized`` counts them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

ELO_SCALE = 400.0 / np.log(10.0)
ELO_BASE = 1000.0
DEFAULT_PRIOR = 0.5
# Log-strengths are kept within this range of the mean: a model that never won is "very weak", not -inf.
_LOG_BOUND = 30.0
_MAX_STEP = 2.0


def mle_exists(wins: np.ndarray) -> bool:
    """True when the Bradley–Terry MLE exists: the graph "i won (or tied) against j" is strongly connected."""
    n_models = wins.shape[0]
    if n_models < 2:
        return True
    n_components, _ = connected_components(csr_matrix(wins > 0), directed=True, connection="strong")
    return n_components == 1


def mle_exists_batch(wins: np.ndarray) -> np.ndarray:
    """``mle_exists`` for a (B, M, M) stack at once, ignoring models absent from a replicate.

    Reachability by repeated squaring of (I + A): strongly connected iff every model reaches every other.
    """
    n_models = wins.shape[-1]
    played = (wins + np.swapaxes(wins, -1, -2)).sum(axis=-1) > 0
    absent = ~played
    reach = (wins > 0) | np.eye(n_models, dtype=bool) | absent[..., :, None] | absent[..., None, :]
    for _ in range(max(1, int(np.ceil(np.log2(max(n_models - 1, 1)))))):
        reach = (reach.astype(np.float64) @ reach.astype(np.float64)) > 0
    return reach.all(axis=(-1, -2))


def bt_fit(wins: np.ndarray, *, prior: float = 0.0, max_iter: int = 200, tol: float = 1e-10) -> np.ndarray:
    """Log-strengths (mean 0 per fit) of a Bradley–Terry model; ``wins`` is (..., M, M), wins[..., i, j] = i over j.

    Ties are expected already split as half a win to each side. Leading dimensions are independent
    fits done together (bootstrap replicates). ``prior`` virtual ties are added to every pair that met.
    Models with no comparison in a fit get NaN.

    Newton's method on the concave log-likelihood, all fits at once: the Hessian is a weighted graph
    Laplacian, made invertible by fixing the mean log-strength at 0. Steps are capped so a fit whose
    MLE does not exist (a model that never lost) walks to the bound instead of overflowing.
    """
    wins = np.asarray(wins, dtype=float)
    single = wins.ndim == 2
    if single:
        wins = wins[None]
    n_models = wins.shape[-1]
    games = wins + np.swapaxes(wins, -1, -2)
    if prior > 0:
        met = games > 0
        wins = wins + 0.5 * prior * met
        games = games + prior * met
    played = games.sum(axis=-1) > 0
    total_wins = wins.sum(axis=-1)
    count = np.maximum(played.sum(axis=-1, keepdims=True), 1)
    eye = np.eye(n_models)
    # Fixing the mean (over models that played) removes the one free direction of the Laplacian;
    # models that did not play get an identity row so the system stays solvable.
    centring = (played[..., :, None] & played[..., None, :]) / count[..., None]
    absent = eye * (~played)[..., None, :]
    theta = np.zeros(wins.shape[:-1])
    for _ in range(max_iter):
        prob = 1.0 / (1.0 + np.exp(theta[..., None, :] - theta[..., :, None]))
        gradient = np.where(played, total_wins - (games * prob).sum(axis=-1), 0.0)
        weight = games * prob * (1.0 - prob)
        laplacian = eye * weight.sum(axis=-1)[..., None, :] - weight
        step = np.linalg.solve(laplacian + centring + absent + 1e-12 * eye, gradient[..., None])[..., 0]
        biggest = np.max(np.abs(step), axis=-1, keepdims=True)
        step = step * np.minimum(1.0, _MAX_STEP / np.maximum(biggest, 1e-300))
        new = theta + step
        new = new - (np.where(played, new, 0.0).sum(axis=-1, keepdims=True) / count)
        new = np.clip(np.where(played, new, 0.0), -_LOG_BOUND, _LOG_BOUND)
        change = np.max(np.abs(new - theta))
        theta = new
        if change < tol:
            break
    result = np.where(played, theta, np.nan)
    return result[0] if single else result


def to_elo(log_strength: np.ndarray) -> np.ndarray:
    return ELO_BASE + ELO_SCALE * log_strength


@dataclass(frozen=True)
class Ranking:
    models: list[str]
    score: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    regularized: bool
    prior: float
    connected: bool
    replicates_regularized: int = 0

    def entries(self) -> list[dict]:
        order = np.argsort(-self.score, kind="stable")

        def num(x: float) -> float | None:
            return None if np.isnan(x) else float(x)

        return [
            {
                "rank": rank,
                "model": self.models[i],
                "score": num(self.score[i]),
                "ci_low": num(self.ci_low[i]),
                "ci_high": num(self.ci_high[i]),
            }
            for rank, i in enumerate(order, start=1)
        ]


def wins_matrix(
    pair_first: np.ndarray, pair_second: np.ndarray, first_score: np.ndarray, second_score: np.ndarray, n_models: int
) -> np.ndarray:
    """(..., M, M) wins from per-pair scores (ties already half): [i, j] = first_score for (i, j) = pair."""
    lead = first_score.shape[:-1]
    wins = np.zeros((*lead, n_models, n_models))
    wins[..., pair_first, pair_second] = first_score
    wins[..., pair_second, pair_first] = second_score
    return wins


def graph_connected(pair_first: np.ndarray, pair_second: np.ndarray, n_models: int) -> bool:
    adjacency = csr_matrix((np.ones(len(pair_first)), (pair_first, pair_second)), shape=(n_models, n_models))
    n_components, _ = connected_components(adjacency, directed=False)
    return n_components == 1


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
    """Bradley–Terry scores (Elo-like scale) with percentile bootstrap CIs.

    ``first_score[k]`` is pair k's first model's wins plus half the ties, ``second_score[k]`` the
    second's; ``replicate_*`` are the same per bootstrap replicate, (B, K). ``prior=None`` picks 0
    (plain MLE) when the MLE exists and DEFAULT_PRIOR otherwise.
    """
    n_models = len(models)
    wins = wins_matrix(pair_first, pair_second, first_score, second_score, n_models)
    regularized = False
    if prior is None:
        regularized = not mle_exists(wins)
        prior = DEFAULT_PRIOR if regularized else 0.0
    else:
        regularized = prior > 0
    score = to_elo(bt_fit(wins, prior=prior))
    alpha = (1.0 - confidence) / 2.0
    replicates_regularized = 0
    if replicate_first.shape[0]:
        replicate_wins = wins_matrix(pair_first, pair_second, replicate_first, replicate_second, n_models)
        boot = to_elo(bt_fit(replicate_wins, prior=prior))
        # A replicate in which some model is unbeaten has no MLE; like the point estimate, it gets the
        # weak prior, so CI bounds stay finite instead of running off to the fit's limit.
        if prior < DEFAULT_PRIOR:
            broken = ~mle_exists_batch(replicate_wins)
            replicates_regularized = int(broken.sum())
            if replicates_regularized:
                boot[broken] = to_elo(bt_fit(replicate_wins[broken], prior=DEFAULT_PRIOR))
        low, high = np.full(n_models, np.nan), np.full(n_models, np.nan)
        for i in range(n_models):
            column = boot[:, i][~np.isnan(boot[:, i])]
            if column.size:
                low[i], high[i] = np.quantile(column, [alpha, 1.0 - alpha])
    else:
        low = high = np.full(n_models, np.nan)
    return Ranking(
        models=list(models),
        score=score,
        ci_low=low,
        ci_high=high,
        regularized=regularized,
        prior=float(prior),
        replicates_regularized=replicates_regularized,
        connected=graph_connected(pair_first, pair_second, n_models),
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
