"""Length-controlled win rate per pair (AlpacaEval 2.0's idea): the win rate at zero length difference.

Raters favour longer answers. For each pair, a logistic model of the first model's score (1 a win,
0 a loss, ties half) on the normalized length difference ``z = tanh((len_first − len_second) / s)``
(``s`` the standard deviation of the pair's length differences):

    P(first wins) = σ(β0 + β1 z)

The length-controlled win rate is 100 σ(β0), the model's prediction when both answers are equally
long. Its interval resamples prompts like the raw win rate (same cluster bootstrap); each replicate
takes one Newton step from the estimate (a one-step bootstrap), so all replicates of all pairs are
one matrix product, and its percentile interval is reported. Pairs without both lengths on any vote,
and intervals resting on fewer than MIN_BOOTSTRAP_PROMPTS prompts, are ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.special import expit

from .bootstrap import MIN_BOOTSTRAP_PROMPTS, intervals, replicate_sums

# Coefficients are kept within this bound: a pair one model always won has no finite estimate.
_COEF_BOUND = 12.0
_RIDGE = 1e-6
_ITERATIONS = 40


@dataclass(frozen=True)
class LengthControlled:
    """Per pair k (first model's point of view, percent): the estimate and its interval, NaN when absent."""

    win_rate: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray


def _solve(g0, g1, h00, h01, h11):  # type: ignore[no-untyped-def]
    """Newton steps H^-1 g for stacks of 2 x 2 systems, with a small ridge."""
    h00, h11 = h00 + _RIDGE, h11 + _RIDGE
    det = h00 * h11 - h01 * h01
    return (h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det


def _cells(key: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (key, z) of the votes in ascending order and each vote's index among them: what
    ``np.unique`` of the stacked rows with ``axis=0`` gives, in one lexsort (several times faster on a
    million votes than sorting the rows as records)."""
    order = np.lexsort((z, key))
    key_sorted, z_sorted = key[order], z[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (key_sorted[1:] != key_sorted[:-1]) | (z_sorted[1:] != z_sorted[:-1])
    index = np.empty(len(order), dtype=np.int64)
    index[order] = np.cumsum(starts) - 1
    return key_sorted[starts], z_sorted[starts], index


def length_controlled(
    *,
    pair_code: np.ndarray,
    n_pairs: int,
    prompt: np.ndarray,
    n_prompts: int,
    score: np.ndarray,
    length_diff: np.ndarray,
    rng: np.random.Generator,
    n_boot: int,
    confidence: float,
) -> LengthControlled:
    """The length-controlled win rate of every pair from its votes.

    One entry per vote: ``pair_code`` (0..n_pairs-1), ``prompt``, ``score`` (1, 0 or 0.5 for the
    pair's first model; NaN for votes left out of win rates) and ``length_diff`` (first's length minus
    second's, NaN when unknown).
    """
    nothing = np.full(n_pairs, np.nan)
    usable = ~np.isnan(length_diff) & ~np.isnan(score)
    if not usable.any():
        return LengthControlled(nothing, nothing.copy(), nothing.copy())
    pair_code, prompt, score, diff = pair_code[usable], prompt[usable], score[usable], length_diff[usable]
    count = np.bincount(pair_code, minlength=n_pairs).astype(float)
    mean = np.bincount(pair_code, weights=diff, minlength=n_pairs) / np.maximum(count, 1)
    spread = np.sqrt(
        np.bincount(pair_code, weights=(diff - mean[pair_code]) ** 2, minlength=n_pairs) / np.maximum(count, 1)
    )
    scale = np.where(spread > 0, spread, 1.0)
    z_vote = np.tanh(diff / scale[pair_code])
    # Cells: one (pair, prompt, z) group of votes; z is the same for every vote of a cell in practice.
    key = pair_code.astype(np.int64) * n_prompts + prompt
    cell_key, z, cell_of_vote = _cells(key, z_vote)
    cell_pair = cell_key // n_prompts
    cell_prompt = cell_key % n_prompts
    n_cells = len(cell_key)
    y = np.bincount(cell_of_vote, weights=score, minlength=n_cells)
    n = np.bincount(cell_of_vote, minlength=n_cells).astype(float)

    def totals(values: np.ndarray) -> np.ndarray:
        return np.bincount(cell_pair, weights=values, minlength=n_pairs)

    beta0, beta1 = np.zeros(n_pairs), np.zeros(n_pairs)
    for _ in range(_ITERATIONS):
        p = expit(beta0[cell_pair] + beta1[cell_pair] * z)
        residual, weight = y - n * p, n * p * (1.0 - p)
        step0, step1 = _solve(
            totals(residual), totals(z * residual), totals(weight), totals(z * weight), totals(z * z * weight)
        )
        beta0 = np.clip(beta0 + step0, -_COEF_BOUND, _COEF_BOUND)
        beta1 = np.clip(beta1 + step1, -_COEF_BOUND, _COEF_BOUND)
    estimate = np.where(count > 0, 100.0 * expit(beta0), np.nan)
    low = high = nothing
    if n_boot:
        p = expit(beta0[cell_pair] + beta1[cell_pair] * z)
        residual, weight = y - n * p, n * p * (1.0 - p)
        parts = [residual, z * residual, weight, z * weight, z * z * weight]
        per_prompt = sparse.hstack(
            [sparse.csr_matrix((v, (cell_prompt, cell_pair)), shape=(n_prompts, n_pairs)) for v in parts]
        ).tocsr()
        sums = replicate_sums(rng, per_prompt, n_boot)
        g0, g1, h00, h01, h11 = (sums[:, i * n_pairs : (i + 1) * n_pairs] for i in range(5))
        step0, _ = _solve(g0, g1, h00, h01, h11)
        boot = 100.0 * expit(np.clip(beta0[None, :] + step0, -_COEF_BOUND, _COEF_BOUND))
        boot[h00 <= 0] = np.nan  # the pair had no drawn prompt in that replicate
        low, high, _ = intervals(estimate, boot, method="percentile", confidence=confidence)
        enough = np.bincount(np.unique(cell_pair * n_prompts + cell_prompt) // n_prompts, minlength=n_pairs)
        low = np.where(enough >= MIN_BOOTSTRAP_PROMPTS, low, np.nan)
        high = np.where(enough >= MIN_BOOTSTRAP_PROMPTS, high, np.nan)
    return LengthControlled(estimate, low, high)
