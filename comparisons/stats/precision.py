"""The precision tracker: how precise each pair's win rate is now, and how many more votes a target needs.

A pair's win rate is r = S / N (S its first model's wins plus half its ties, N its votes), a ratio of sums
over prompts. Votes on one prompt are correlated, so its variance is the cluster-robust (delta-method) one
over prompts, the large-sample version of the bootstrap over prompts the results page uses:

    var(r) = P / (P - 1) * sum_p (s_p - r n_p)^2 / N^2

(s_p, n_p the score and votes on prompt p, P the prompts with votes), computed with one virtual win and one
virtual loss added, each on a prompt of its own: a pair whose first few votes all agree (or are all ties) is
not reported as perfectly precise, and after a few dozen votes the two virtual ones no longer matter. The
interval's half-width is z * sqrt(var(r)) in percentage points.

Projection: a variance that falls as 1/N (future votes spread over prompts as the past ones did, so the
prompt-level spread and the votes per prompt stay as observed) reaches a target half-width h* after
N * (h / h*)^2 votes. The projection is only as good as that assumption and the variance seen so far,
which is why the sentence says "about" and rounds to two significant figures.

Pure numpy; the campaign services build the per-prompt cells (``pairs.cells_build``) and call this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri


@dataclass(frozen=True)
class PairPrecision:
    """Per pair: votes, prompts, win rate (percent), the interval's half-width now (points; NaN below two
    prompts), the votes it needs in all to reach the target (NaN without a target or a half-width) and
    how many more that is (0 once reached)."""

    votes: np.ndarray
    prompts: np.ndarray
    win_rate: np.ndarray
    half_width: np.ndarray
    votes_needed: np.ndarray
    votes_more: np.ndarray


def precision_project(
    *,
    cell_pair: np.ndarray,
    cell_score: np.ndarray,
    cell_votes: np.ndarray,
    n_pairs: int,
    target_half_width: float | None = None,
    confidence: float = 0.95,
) -> PairPrecision:
    """Half-widths and projections for ``n_pairs`` pairs from their (pair, prompt) cells: cell i belongs to
    pair ``cell_pair[i]`` and holds ``cell_score[i]`` (wins + ties / 2) out of ``cell_votes[i]`` votes."""
    if target_half_width is not None and not target_half_width > 0:
        raise ValueError(f"The target half-width must be a positive number of points, not {target_half_width!r}.")
    cell_pair = np.asarray(cell_pair, dtype=np.int64)
    cell_score = np.asarray(cell_score, dtype=float)
    cell_votes = np.asarray(cell_votes, dtype=float)
    used = cell_votes > 0
    cell_pair, cell_score, cell_votes = cell_pair[used], cell_score[used], cell_votes[used]
    votes = np.bincount(cell_pair, weights=cell_votes, minlength=n_pairs)
    score = np.bincount(cell_pair, weights=cell_score, minlength=n_pairs)
    prompts = np.bincount(cell_pair, minlength=n_pairs)
    with np.errstate(divide="ignore", invalid="ignore"):
        win_rate = 100.0 * score / votes
        shrunk = (score + 1.0) / (votes + 2.0)  # with the virtual win and loss
        residual = cell_score - shrunk[cell_pair] * cell_votes
        virtual = (1.0 - shrunk) ** 2 + shrunk**2
        spread = np.bincount(cell_pair, weights=residual**2, minlength=n_pairs) + virtual
        variance = (prompts + 2.0) / (prompts + 1.0) * spread / (votes + 2.0) ** 2
    z = float(ndtri(0.5 + confidence / 2.0))
    half_width = np.where(prompts >= 2, 100.0 * z * np.sqrt(variance), np.nan)
    if target_half_width is None:
        needed = np.full(n_pairs, np.nan)
        more = np.full(n_pairs, np.nan)
    else:
        needed = np.ceil(votes * (half_width / target_half_width) ** 2)
        more = np.where(np.isnan(needed), np.nan, np.maximum(needed - votes, 0.0))
    return PairPrecision(
        votes=votes, prompts=prompts, win_rate=win_rate, half_width=half_width, votes_needed=needed, votes_more=more
    )


def about(n: float) -> int:
    """``n`` rounded to two significant figures (an estimate shown as "about 300 more")."""
    if n <= 0:
        return 0
    digits = max(0, int(math.floor(math.log10(n))) - 1)
    return int(round(n / 10**digits) * 10**digits)


def precision_sentence(
    *,
    model_a: str,
    model_b: str,
    votes: int,
    half_width: float | None,
    target: float | None,
    votes_more: float | None,
    room: int | None = None,
) -> str:
    """The tracker in one sentence, e.g. "text-davinci-003 vs Alpaca 7B: ±6.1 points after 540 votes; about
    300 more to reach ±5". ``room`` is how many more votes the campaign can still take (comparisons × k
    minus what it holds); a projection beyond it says so."""
    vs = f"{model_a} vs {model_b}"
    if half_width is None or math.isnan(half_width):
        return f"{vs}: {votes} vote{'' if votes == 1 else 's'} so far, on too few prompts to measure precision yet"
    head = f"{vs}: ±{half_width:.1f} points after {votes} vote{'' if votes == 1 else 's'}"
    if target is None:
        return head
    goal = f"±{target:g}"
    if votes_more is None or math.isnan(votes_more) or votes_more <= 0:
        return f"{head}; {goal} reached"
    more = about(votes_more)
    if room is not None and votes_more > room:
        return f"{head}; about {more} more to reach {goal}, more than the {room} this campaign can still take"
    return f"{head}; about {more} more to reach {goal}"
