"""Bias checks: do raters favour the left response, or the longer one?"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.stats import binomtest

from .bootstrap import num, ratio_intervals, replicate_sums
from .table import SIDE_A, SIDE_B, SIDE_BOTH_BAD, Votes

# Length difference buckets, in characters (longer minus shorter response).
LENGTH_BUCKETS = ((1, 100), (100, 300), (300, 1000), (1000, None))


def position_bias(votes: Votes, *, confidence: float = 0.95) -> dict:
    """Share of decisive votes (a model won) that went to the response shown on the left.

    Needs a ``left_model`` column; without one (or with it empty everywhere) ``available`` is False.
    The CI is Clopper–Pearson and the p-value an exact two-sided binomial test against 50%: each comparison's
    votes are split evenly between the two sides (campaigns counterbalance them; otherwise the side is drawn at
    random), so with no bias left picks are a fair coin, or closer to even than one.
    """
    result: dict = {
        "available": False,
        "decisive": 0,
        "left_picks": 0,
        "right_picks": 0,
        "left_share": None,
        "ci_low": None,
        "ci_high": None,
        "p_value": None,
    }
    decisive = (votes.left_side >= 0) & ((votes.side == SIDE_A) | (votes.side == SIDE_B))
    n = int(decisive.sum())
    if n == 0:
        return result
    left = int((decisive & (votes.side == votes.left_side)).sum())
    test = binomtest(left, n, 0.5)
    ci = test.proportion_ci(confidence_level=confidence, method="exact")
    result.update(
        available=True,
        decisive=n,
        left_picks=left,
        right_picks=n - left,
        left_share=100.0 * left / n,
        ci_low=100.0 * ci.low,
        ci_high=100.0 * ci.high,
        p_value=float(test.pvalue),
    )
    return result


def _bucket_label(low: int, high: int | None) -> str:
    return f"{low}+" if high is None else f"{low}-{high - 1}"


def length_bias(
    votes: Votes,
    *,
    both_bad: str = "tie",
    n_boot: int = 1000,
    seed: int = 0,
    method: str = "bca",
    confidence: float = 0.95,
) -> dict:
    """Win rate (percent, ties half) of the longer response, overall and by length-difference bucket.

    Needs ``length_a`` and ``length_b`` (characters); votes with a missing length or equal lengths are
    left out. CIs resample prompts like the pair win rates: percentile or BCa (acceleration from the
    leave-one-prompt-out jackknife), with the same exact fallback for few prompts (``ci_method``).
    """
    result: dict = {
        "available": False,
        "votes": 0,
        "longer_win_rate": None,
        "ci_low": None,
        "ci_high": None,
        "ci_method": None,
    }
    result["buckets"] = []
    frame, prompt, n_prompts = votes.frame, votes.prompt, len(votes.prompts)
    if "length_a" not in frame.columns or "length_b" not in frame.columns:
        return result
    len_a = frame["length_a"].to_numpy(dtype=float)
    len_b = frame["length_b"].to_numpy(dtype=float)
    usable = ~np.isnan(len_a) & ~np.isnan(len_b) & (len_a != len_b)
    if both_bad == "exclude":
        usable &= votes.side != SIDE_BOTH_BAD
    if not usable.any():
        return result
    longer = np.where(len_a > len_b, SIDE_A, SIDE_B)
    decisive = (votes.side == SIDE_A) | (votes.side == SIDE_B)
    score = np.where(decisive, (votes.side == longer).astype(float), 0.5)
    diff = np.abs(len_a - len_b)
    columns = [usable]
    for low, high in LENGTH_BUCKETS:
        columns.append(usable & (diff >= low) & ((diff < high) if high is not None else True))
    n_cols = len(columns)
    member = np.stack(columns, axis=1)
    # One cell per (prompt, column) with votes: the longer response's score and the number of votes.
    rows, cols = np.nonzero(member)
    cell_key, cell_of_vote = np.unique(prompt[rows] * n_cols + cols, return_inverse=True)
    cell_num = np.bincount(cell_of_vote, weights=score[rows], minlength=len(cell_key))
    cell_den = np.bincount(cell_of_vote, minlength=len(cell_key)).astype(float)
    cell_prompt, cell_col = cell_key // n_cols, cell_key % n_cols
    per_prompt = sparse.hstack(
        [
            sparse.csr_matrix((values, (cell_prompt, cell_col)), shape=(n_prompts, n_cols))
            for values in (cell_num, cell_den)
        ]
    ).tocsr()
    rates = ratio_intervals(
        cell_col=cell_col,
        cell_num=cell_num,
        cell_den=cell_den,
        n_cols=n_cols,
        replicates=replicate_sums(np.random.default_rng(seed), per_prompt, n_boot),
        method=method,
        confidence=confidence,
    )
    totals = np.bincount(cell_col, weights=cell_den, minlength=n_cols)
    estimate, low, high = rates.estimate, rates.low, rates.high

    result.update(
        available=True,
        votes=int(totals[0]),
        longer_win_rate=num(estimate[0]),
        ci_low=num(low[0]),
        ci_high=num(high[0]),
        ci_method=rates.method[0],
    )
    result["buckets"] = [
        {
            "chars": _bucket_label(lo, hi),
            "votes": int(totals[c + 1]),
            "longer_win_rate": num(estimate[c + 1]),
            "ci_low": num(low[c + 1]),
            "ci_high": num(high[c + 1]),
            "ci_method": rates.method[c + 1],
        }
        for c, (lo, hi) in enumerate(LENGTH_BUCKETS)
    ]
    return result
