"""Estimates of an adaptively routed campaign: each vote weighted by the inverse of its pair's chance of being served.

Under adaptive routing (``routing.py``) the next pair depends on the votes so far, so a pair whose first votes
happened to look lopsided gets fewer votes afterwards and keeps its extreme estimate: plain win rates drift away
from 50% and Bradley–Terry scores spread out. Every routed vote records ``routing_probability``, the chance its
pair had of being served when it was; weighting the vote by its inverse (Horvitz–Thompson; Chatbot Arena weights
its Bradley–Terry fit the same way, Chiang et al. 2024, §5) removes that drift.

Per pair, the weighted win rate is Σ w·score / Σ w over its votes (ties count half), with a percentile bootstrap
interval over prompts (votes on one prompt are resampled together, as everywhere else). The weighted ranking is
the Bradley–Terry fit on each pair's votes split by its weighted win rate: the pair keeps its number of votes
(the fit's precision) and takes the weighted share of wins. A pair gets weighted figures only when every one of
its votes has a probability (a vote served without adaptive routing has none); the ranking only when every vote
has one. Pure numpy: no Django.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from .bootstrap import percentile_bounds, rate_fields, replicate_sums
from .pairs import Cells
from .ranking import Ranking, ranking_compute
from .table import FIRST_WINS, SECOND_WINS, TIED, Votes

PROBABILITY_COLUMN = "routing_probability"


@dataclass(frozen=True)
class Weighted:
    """Per pair of ``cells`` (percent, for the pair's first model; NaN where the pair has an unrouted vote) and
    the weighted ranking (None unless every vote was routed)."""

    win_rate: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    ranking: Ranking | None

    def fields(self, k: int, *, flip: bool) -> dict[str, float | None]:
        """Pair ``k``'s ``weighted_win_rate``, ``weighted_ci_low``, ``weighted_ci_high``, for its second model
        with ``flip``."""
        return rate_fields("weighted_", self.win_rate[k], self.ci_low[k], self.ci_high[k], flip=flip)


def routing_probabilities(votes: Votes) -> np.ndarray | None:
    """Each used vote's routing probability (NaN where it has none), or None when the table has no such value."""
    if PROBABILITY_COLUMN not in votes.frame.columns:
        return None
    probability = votes.frame[PROBABILITY_COLUMN].to_numpy(dtype=float)
    return probability if (~np.isnan(probability)).any() else None


def weighted_estimates(
    votes: Votes,
    cells: Cells,
    probability: np.ndarray,
    *,
    both_bad: str,
    n_boot: int,
    rng: np.random.Generator,
    confidence: float,
) -> Weighted:
    """Inverse-probability-weighted win rates of every pair of ``cells`` and, when every vote was routed, the
    weighted Bradley–Terry ranking; intervals from ``n_boot`` resamplings of the prompts."""
    n_models, n_pairs, n_prompts = len(votes.models), cells.n_pairs, len(votes.prompts)
    score = np.select(
        [votes.outcome == FIRST_WINS, votes.outcome == SECOND_WINS, votes.outcome == TIED],
        [1.0, 0.0, 0.5],
        0.5 if both_bad == "tie" else np.nan,
    )
    counted = ~np.isnan(score)  # both_bad="exclude" leaves those votes out, as the plain estimates do
    codes = cells.pair_first * n_models + cells.pair_second
    code = votes.first * n_models + votes.second
    pair = np.minimum(np.searchsorted(codes, code), n_pairs - 1)
    counted &= codes[pair] == code  # a pair whose only votes were both_bad="exclude" is not in the cells
    unrouted = np.bincount(pair[counted & np.isnan(probability)], minlength=n_pairs) > 0
    use = counted & ~unrouted[pair]
    weight = np.where(use, 1.0 / np.where(np.isnan(probability), 1.0, probability), 0.0)
    votes_used = use.astype(float)
    per_prompt = sparse.hstack(
        [
            sparse.csr_matrix((values, (votes.prompt, pair)), shape=(n_prompts, n_pairs))
            for values in (weight * np.where(use, score, 0.0), weight, votes_used)
        ]
    ).tocsr()
    total = np.asarray(per_prompt.sum(axis=0)).ravel()
    replicates = replicate_sums(rng, per_prompt, n_boot)

    def shares(sums: np.ndarray) -> np.ndarray:
        weighted_score, weights = sums[..., :n_pairs], sums[..., n_pairs : 2 * n_pairs]
        return np.divide(weighted_score, weights, out=np.full(weights.shape, np.nan), where=weights > 0)

    share = np.where(unrouted, np.nan, shares(total))
    replicate_share = shares(replicates)
    low, high = percentile_bounds(100.0 * replicate_share, confidence) if n_boot else (share * np.nan,) * 2
    low, high = np.where(unrouted, np.nan, low), np.where(unrouted, np.nan, high)

    ranking = None
    if not unrouted.any():
        # Each pair keeps its number of votes and takes the weighted share of wins (a pair without a counted
        # vote, all both bad and left out, has no share and no games).
        games, replicate_games = total[2 * n_pairs :], replicates[:, 2 * n_pairs :]
        first, replicate_first = games * np.nan_to_num(share), replicate_games * np.nan_to_num(replicate_share)
        ranking = ranking_compute(
            models=votes.models,
            pair_first=cells.pair_first,
            pair_second=cells.pair_second,
            first_score=first,
            second_score=games - first,
            replicate_first=replicate_first,
            replicate_second=replicate_games - replicate_first,
            confidence=confidence,
        )
    return Weighted(win_rate=100.0 * share, ci_low=low, ci_high=high, ranking=ranking)
