"""Cluster bootstrap over prompts: replicate sums, percentile and BCa intervals, all vectorized.

A replicate study draws prompts with replacement; every vote on a drawn prompt comes with it, because
votes on one prompt are not independent. Replicates are represented by how many times each prompt was
drawn (a (B, P) count matrix), so any statistic that is a sum over prompts is one matrix product for
all replicates at once, and a win rate is a ratio of two such sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.special import ndtr, ndtri
from scipy.stats import beta

CI_METHODS = ("bca", "percentile")
# Replicates are generated in blocks so the (block, P) count matrix stays around this many cells.
_BLOCK_CELLS = 4_000_000


def resample_counts(rng: np.random.Generator, n_prompts: int, n_rounds: int) -> np.ndarray:
    """How often each of ``n_prompts`` prompts is drawn in each of ``n_rounds`` replicates: (n_rounds, n_prompts)."""
    draws = rng.integers(0, n_prompts, size=(n_rounds, n_prompts))
    offsets = (np.arange(n_rounds, dtype=np.int64) * n_prompts)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=n_rounds * n_prompts).reshape(n_rounds, n_prompts)


def replicate_sums(rng: np.random.Generator, per_prompt: sparse.spmatrix | np.ndarray, n_boot: int) -> np.ndarray:
    """Bootstrap replicates of column sums of a (P, X) per-prompt matrix: a (n_boot, X) array.

    Row p of ``per_prompt`` holds prompt p's contribution to each of X sums (wins of a pair, votes of
    a pair...). Replicate b's sums are ``counts[b] @ per_prompt``.
    """
    n_prompts, n_cols = per_prompt.shape
    out = np.empty((n_boot, n_cols))
    if n_boot == 0:
        return out
    matrix = sparse.csr_matrix(per_prompt) if not sparse.issparse(per_prompt) else per_prompt.tocsr()
    transposed = matrix.T.tocsr()
    block = max(1, min(n_boot, _BLOCK_CELLS // max(n_prompts, 1)))
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        counts = resample_counts(rng, n_prompts, stop - start).astype(np.float64)
        out[start:stop] = (transposed @ counts.T).T
    return out


def column_quantiles(boot: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Quantile ``levels[l, k]`` of column k of ``boot``, NaN rounds ignored: a (L, K) array.

    Linear interpolation between order statistics (numpy's default), for all columns at once; NaN
    for a column with no valid round.
    """
    levels = np.asarray(levels, dtype=float)
    ordered = np.sort(boot, axis=0)  # NaN sorts last
    n_valid = (~np.isnan(boot)).sum(axis=0)
    position = levels * np.maximum(n_valid - 1, 0)
    below = np.clip(np.floor(position).astype(np.int64), 0, np.maximum(n_valid - 1, 0))
    above = np.minimum(below + 1, np.maximum(n_valid - 1, 0))
    if ordered.shape[0] == 0:
        return np.full(levels.shape, np.nan)
    low_value = np.take_along_axis(ordered, below, axis=0)
    high_value = np.take_along_axis(ordered, above, axis=0)
    out = low_value + (high_value - low_value) * (position - below)
    return np.where(n_valid > 0, out, np.nan)


def percentile_bounds(boot: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval of each column of ``boot`` at ``confidence``, NaN rounds ignored: (low, high)."""
    alpha = (1.0 - confidence) / 2.0
    bounds = column_quantiles(boot, np.tile(np.array([[alpha], [1.0 - alpha]]), (1, boot.shape[1])))
    return bounds[0], bounds[1]


def jackknife_acceleration(jack: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """BCa acceleration per statistic from leave-one-prompt-out estimates.

    ``jack[i]`` is statistic ``group[i]`` recomputed without one prompt. Returns one acceleration per
    group, 0 where it is undefined (fewer than two prompts, or no variation).
    """
    valid = ~np.isnan(jack)
    jack, group = jack[valid], group[valid]
    count = np.bincount(group, minlength=n_groups).astype(float)
    total = np.bincount(group, weights=jack, minlength=n_groups)
    mean = np.divide(total, count, out=np.zeros(n_groups), where=count > 0)
    dev = mean[group] - jack
    s2 = np.bincount(group, weights=dev**2, minlength=n_groups)
    s3 = np.bincount(group, weights=dev**3, minlength=n_groups)
    denom = 6.0 * s2**1.5
    return np.divide(s3, denom, out=np.zeros(n_groups), where=(denom > 0) & (count >= 2))


def intervals(
    estimate: np.ndarray,
    boot: np.ndarray,
    *,
    method: str,
    confidence: float,
    acceleration: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower bounds, upper bounds and standard errors for K statistics from (B, K) replicates.

    ``method`` is ``percentile`` or ``bca`` (bias-corrected and accelerated, Efron 1987; the bias
    correction uses the mid-rank of the estimate among the replicates, as scipy does). Replicates that
    are NaN (the statistic did not exist in that replicate, e.g. a pair with no drawn prompt) are left out.
    """
    if method not in CI_METHODS:
        raise ValueError(f"Unknown CI method {method!r}; use one of {', '.join(CI_METHODS)}.")
    n_stats = boot.shape[1]
    if boot.shape[0] == 0:
        nothing = np.full(n_stats, np.nan)
        return nothing, nothing.copy(), nothing.copy()
    alpha = (1.0 - confidence) / 2.0
    valid = ~np.isnan(boot)
    n_valid = valid.sum(axis=0)
    filled = np.where(valid, boot, 0.0)
    mean = filled.sum(axis=0) / np.maximum(n_valid, 1)
    squares = np.where(valid, (boot - mean) ** 2, 0.0).sum(axis=0)
    se = np.where(n_valid > 1, np.sqrt(squares / np.maximum(n_valid - 1, 1)), np.nan)
    if method == "percentile":
        low, high = percentile_bounds(boot, confidence)
        return low, high, se
    below = np.where(valid, boot < estimate, False).sum(axis=0)
    at_or_below = np.where(valid, boot <= estimate, False).sum(axis=0)
    share = np.divide(below + at_or_below, 2.0 * n_valid, out=np.full(n_stats, 0.5), where=n_valid > 0)
    # An estimate outside every replicate would give an infinite bias correction; keep it finite.
    floor = 1.0 / (2.0 * np.maximum(n_valid, 1))
    z0 = ndtri(np.clip(share, floor, 1.0 - floor))
    accel = np.zeros(n_stats) if acceleration is None else acceleration
    z = ndtri(np.array([alpha, 1.0 - alpha]))[:, None]
    shifted = z0[None, :] + z
    denom = 1.0 - accel[None, :] * shifted
    with np.errstate(divide="ignore", invalid="ignore"):
        adjusted = ndtr(z0[None, :] + shifted / denom)
    # Where the acceleration is so large the formula breaks down, fall back to the widest bound.
    adjusted = np.where(denom > 0, adjusted, np.array([[0.0], [1.0]]))
    levels = np.clip(adjusted, 0.0, 1.0)
    bounds = column_quantiles(boot, levels)
    return bounds[0], bounds[1], se


# Fewer prompts than this and a bootstrap over prompts says little about the spread: the interval is
# then an exact one on prompt-level outcomes instead (see ``ratio_intervals``).
MIN_BOOTSTRAP_PROMPTS = 10
# Labels of ``RatioIntervals.method`` besides the bootstrap methods themselves.
CI_EXACT = "clopper_pearson"
CI_TOO_FEW = "too_few_prompts"


def clopper_pearson(rate: np.ndarray, n: np.ndarray, *, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Clopper–Pearson bounds (proportions) for ``rate * n`` successes in ``n`` trials, element-wise.

    The Beta-quantile form accepts a fractional number of successes (a score with ties counted half).
    """
    alpha = (1.0 - confidence) / 2.0
    successes = rate * n
    with np.errstate(divide="ignore", invalid="ignore"):
        low = np.where(successes > 0, beta.ppf(alpha, successes, n - successes + 1), 0.0)
        high = np.where(successes < n, beta.ppf(1.0 - alpha, successes + 1, n - successes), 1.0)
    return low, high


@dataclass(frozen=True)
class RatioIntervals:
    """K ratio statistics (percent) with their intervals; ``method[k]`` says how interval k was made.

    ``method`` is the bootstrap method (``bca``/``percentile``), ``clopper_pearson`` when the
    bootstrap was degenerate or the prompts too few, ``too_few_prompts`` (no interval) with a single
    prompt, or None when no bootstrap was asked for (``n_boot`` 0).
    """

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    se: np.ndarray
    prompts: np.ndarray
    method: list[str | None]


def ratio_intervals(
    *,
    cell_col: np.ndarray,
    cell_num: np.ndarray,
    cell_den: np.ndarray,
    n_cols: int,
    replicates: np.ndarray,
    method: str,
    confidence: float,
) -> RatioIntervals:
    """100 × (sum of numerators) / (sum of denominators) per column, with a cluster-bootstrap interval.

    A *cell* is one prompt's contribution to one column (``cell_num``, ``cell_den``; at most one cell
    per prompt and column). ``replicates`` is (B, 2K): the replicate sums of [numerators | denominators].
    BCa's acceleration comes from the leave-one-prompt-out jackknife. A column whose bootstrap is
    degenerate (no spread) or that rests on fewer than MIN_BOOTSTRAP_PROMPTS prompts gets a Clopper–Pearson
    interval at the observed rate over its prompts taken as single outcomes (at most as informative
    as that many independent trials); a column with one prompt gets no interval.
    """
    total_num = np.bincount(cell_col, weights=cell_num, minlength=n_cols)
    total_den = np.bincount(cell_col, weights=cell_den, minlength=n_cols)
    prompts = np.bincount(cell_col[cell_den > 0], minlength=n_cols)
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = 100.0 * total_num / total_den
        boot = 100.0 * replicates[:, :n_cols] / replicates[:, n_cols:]
        jack = 100.0 * (total_num[cell_col] - cell_num) / (total_den[cell_col] - cell_den)
    boot[~np.isfinite(boot)] = np.nan
    jack[~np.isfinite(jack)] = np.nan
    acceleration = jackknife_acceleration(jack, cell_col, n_cols) if method == "bca" else None
    low, high, se = intervals(estimate, boot, method=method, confidence=confidence, acceleration=acceleration)
    labels: list[str | None] = [None] * n_cols
    if replicates.shape[0]:
        degenerate = ~(high - low > 1e-9) | (prompts < MIN_BOOTSTRAP_PROMPTS)
        exact_low, exact_high = clopper_pearson(estimate / 100.0, prompts.astype(float), confidence=confidence)
        low = np.where(degenerate, 100.0 * exact_low, low)
        high = np.where(degenerate, 100.0 * exact_high, high)
        se = np.where(degenerate, np.nan, se)
        too_few = (prompts < 2) | np.isnan(estimate)
        low, high = np.where(too_few, np.nan, low), np.where(too_few, np.nan, high)
        se = np.where(too_few, np.nan, se)
        labels = [
            CI_TOO_FEW if few else (CI_EXACT if exact else method)
            for few, exact in zip(too_few.tolist(), degenerate.tolist(), strict=True)
        ]
        labels = [None if np.isnan(e) else label for e, label in zip(estimate.tolist(), labels, strict=True)]
    return RatioIntervals(estimate=estimate, low=low, high=high, se=se, prompts=prompts, method=labels)


def num(x: float) -> float | None:
    """A float for JSON: None for NaN."""
    return None if np.isnan(x) else float(x)


def rate_fields(prefix: str, rate: float, low: float, high: float, *, flip: bool) -> dict[str, float | None]:
    """``{prefix}win_rate``, ``{prefix}ci_low``, ``{prefix}ci_high`` (percent) of a pair's first model, or with
    ``flip`` of its second (100 minus the rate, the bounds swapped); None for NaN."""
    if flip:
        rate, low, high = 100.0 - rate, 100.0 - high, 100.0 - low
    return {f"{prefix}win_rate": num(rate), f"{prefix}ci_low": num(low), f"{prefix}ci_high": num(high)}
