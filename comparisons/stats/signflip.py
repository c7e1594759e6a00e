"""The p-value of a win rate against 50%: a sign-flip test over prompts (a cluster permutation test).

The statistic is wins minus losses, T = Σ_p d_p with d_p = wins − losses on prompt p (ties and,
when counted as ties, "both bad" votes add nothing): T is 0 exactly when the win rate (ties half) is
50%. Under the null hypothesis that neither model is better, each prompt's d_p is as likely to be
+d_p as −d_p: the two responses could swap names. The p-value is the share of the 2^P sign patterns
(prompts flipped as whole clusters, never single votes) whose |T| is at least the observed one.

Votes on one prompt move together, so five raters agreeing on a prompt count as one prompt judged
with weight five, not as five independent coin flips: the test keeps its level with any number of
votes per prompt, as the prompt-clustered interval does. With one vote per prompt it is exactly the
two-sided sign (binomial) test on decisive votes.

The null distribution is computed exactly (a convolution over prompts, all pairs at once) up to
NORMAL_MIN_PROMPTS prompts with d_p ≠ 0, and up to EXACT_MAX_PROMPTS when one prompt carries more
than NORMAL_MAX_SHARE of the variance Σ d_p²; otherwise a normal approximation with that exact
variance and a continuity correction, which at that size agrees with the exact one to about 1e-3.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

EXACT_MAX_PROMPTS = 1000
# Above this many prompts, and when no prompt carries more than this share of the variance, the
# normal approximation (with continuity correction) is used: it is then within about 1e-3 of exact.
NORMAL_MIN_PROMPTS = 500
NORMAL_MAX_SHARE = 0.05
# Pairs are convolved together in blocks of about this many (pairs × lattice points).
_BLOCK_CELLS = 2_000_000
_EXACT_MAX_SPAN = 200_000


def sign_flip_p_values(group: np.ndarray, diff: np.ndarray, n_groups: int) -> np.ndarray:
    """Two-sided sign-flip p-values, one per group, from per-prompt ``diff`` (wins − losses, integers).

    ``group[i]`` is the group (pair) of entry i; each entry is one prompt of that group. A group with
    no non-zero difference gets 1.0.
    """
    diff = np.rint(np.asarray(diff, dtype=float)).astype(np.int64)
    group = np.asarray(group, dtype=np.int64)
    keep = diff != 0
    group, size = group[keep], np.abs(diff[keep])
    observed = np.abs(np.bincount(group, weights=diff[keep], minlength=n_groups)).astype(np.int64)
    count = np.bincount(group, minlength=n_groups)
    span = np.bincount(group, weights=size, minlength=n_groups).astype(np.int64)
    p = np.ones(n_groups)
    variance = np.bincount(group, weights=size.astype(float) ** 2, minlength=n_groups)
    largest = np.zeros(n_groups)
    np.maximum.at(largest, group, size.astype(float) ** 2)
    # The normal approximation is used only where it is excellent: many prompts, none dominating.
    normal_fits = (count > NORMAL_MIN_PROMPTS) & (largest <= NORMAL_MAX_SHARE * variance)
    exact = (count > 0) & (count <= EXACT_MAX_PROMPTS) & (span <= _EXACT_MAX_SPAN) & ~normal_fits
    approx = (count > 0) & ~exact
    if approx.any():
        step = np.ones(n_groups, dtype=np.int64)  # half the lattice step of T: the continuity correction
        for g in np.flatnonzero(approx):
            step[g] = np.gcd.reduce(size[group == g])
        z = (observed - step) / np.sqrt(np.maximum(variance, 1e-300))
        p[approx] = np.minimum(1.0, 2.0 * ndtr(-z[approx]))
        p[approx & (observed == 0)] = 1.0
    exact_groups = np.flatnonzero(exact)
    if exact_groups.size:
        # How many prompts of each size every exact group has: an (exact groups, distinct sizes) table.
        position = np.full(n_groups, -1, dtype=np.int64)
        position[exact_groups] = np.arange(exact_groups.size)
        in_exact = position[group] >= 0
        values, value_index = np.unique(size[in_exact], return_inverse=True)
        multiplicity = np.bincount(
            position[group[in_exact]] * len(values) + value_index, minlength=exact_groups.size * len(values)
        ).reshape(exact_groups.size, len(values))
        by_span = np.argsort(span[exact_groups], kind="stable")
        block_start = 0
        while block_start < len(by_span):
            width = 2 * int(span[exact_groups[by_span[block_start]]]) + 1
            block_stop = block_start + 1
            while block_stop < len(by_span):
                wider = 2 * int(span[exact_groups[by_span[block_stop]]]) + 1
                if wider * (block_stop - block_start + 1) > _BLOCK_CELLS:
                    break
                width, block_stop = wider, block_stop + 1
            chosen = by_span[block_start:block_stop]
            used = multiplicity[chosen].any(axis=0)
            p[exact_groups[chosen]] = _exact_block(
                multiplicity[chosen][:, used], values[used], observed[exact_groups[chosen]], (width - 1) // 2
            )
            block_start = block_stop
    return p


def _exact_block(multiplicity: np.ndarray, values: np.ndarray, observed: np.ndarray, half_width: int) -> np.ndarray:
    """Exact p-values of several groups at once: the null distribution of Σ ±size on one lattice each.

    ``multiplicity[r, v]`` is how many prompts of group r have |wins − losses| = ``values[v]``.
    Row r starts as a point mass at 0 and, prompt by prompt, splits into two halves moved by ±size;
    every value is a sum of powers of 2^-1, so tails down to 2^-EXACT_MAX_PROMPTS stay exact. Prompts
    are taken by size: for size c, rows sorted by how many prompts of size c they have, so the rows
    that still need a split are always a leading slice (no copies), within the lattice reached so far.
    """
    n_rows = len(multiplicity)
    pmf = np.zeros((n_rows, 2 * half_width + 1))
    pmf[:, half_width] = 1.0
    position = np.arange(n_rows)  # pmf row i holds group position[i]
    reach = 0
    for index, shift in enumerate(values.tolist()):
        order = np.argsort(-multiplicity[position, index], kind="stable")
        pmf, position = pmf[order], position[order]
        needed = multiplicity[position, index]
        for times in range(1, int(needed[0]) + 1 if n_rows else 1):
            rows = int(np.searchsorted(-needed, -times, side="right"))
            lo, hi = max(0, half_width - reach - shift), min(pmf.shape[1], half_width + reach + shift + 1)
            window = pmf[:rows, lo:hi]
            moved = np.zeros_like(window)
            moved[:, shift:] += window[:, : hi - lo - shift]
            moved[:, : hi - lo - shift] += window[:, shift:]
            window[...] = 0.5 * moved
            reach += shift
    restore = np.empty(n_rows, dtype=np.int64)
    restore[position] = np.arange(n_rows)
    pmf = pmf[restore]
    value = np.abs(np.arange(-half_width, half_width + 1))
    tail = np.where(value[None, :] >= observed[:, None], pmf, 0.0).sum(axis=1)
    return np.minimum(tail, 1.0)


def sign_flip_p(diff: np.ndarray) -> float:
    """The test for one pair from its per-prompt wins − losses."""
    diff = np.asarray(diff)
    return float(sign_flip_p_values(np.zeros(len(diff), dtype=np.int64), diff, 1)[0])
