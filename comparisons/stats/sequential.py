"""An anytime-valid confidence sequence for a win rate, for stopping as soon as a pair is decisive.

Checking an ordinary 95% interval after every vote and stopping when it leaves 50% out is peeking: under
two equally good models it stops with a "winner" far more often than 5% of the time (the simulation test
measures it). A confidence sequence instead holds at every moment at once: with probability at least 95%,
the true win rate is inside the interval at *every* time it is looked at, so stopping whenever it leaves 50%
out keeps the false-positive rate at or below 5%.

Method: the hedged-capital betting confidence sequence of Waudby-Smith and Ramdas, "Estimating means of
bounded random variables by betting", Journal of the Royal Statistical Society Series B 86(1):1–27 (2024;
arXiv:2010.09686, 2020), Theorem 3 with the predictable plug-in bets of their equation (26). For a candidate
mean m, two gamblers bet on each outcome x_t in [0, 1] being above (resp. below) m, with stakes
lambda_t fixed before x_t is seen; their capital K_t(m) = 1/2 prod(1 + lambda_i (x_i - m)) +
1/2 prod(1 - lambda_i (x_i - m)) is a non-negative martingale when m is the true mean, so by Ville's inequality
it ever reaches 1/alpha with probability at most alpha. The confidence sequence is the set of m whose
capital has never reached 1/alpha (the running intersection).

Units. The martingale argument needs each outcome's mean, given everything seen before, to be the win rate.
Votes on one prompt are correlated (a prompt can favour one model), so with k votes per comparison the unit
is a *comparison*: its mean score (win 1, tie 1/2, loss 0) enters the sequence when its votes are complete,
in the order comparisons complete. Which comparison completes next depends on the scheduler, never on
outcomes, and prompts are (as in the bootstrap over prompts) draws from the population of prompts, so the
units are independent draws with the pair's win rate as mean. With k = 1 every vote is a unit.

Pure numpy, vectorized over any leading axes (the tests run thousands of simulated studies at once).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_ALPHA = 0.05
# Stakes are capped at this share of what would bankrupt a gambler (the paper's c = 1/2).
_STAKE_CAP = 0.5
# Grid step (as a proportion) on which the sequence's bounds are read.
_GRID_STEP = 0.002


def plugin_stakes(x: np.ndarray, *, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """The predictable plug-in stakes lambda_t (before capping) for outcomes ``x`` (..., T) in [0, 1].

    lambda_t = sqrt(2 log(2/alpha) / (sigma2_{t-1} t log(t + 1))), sigma2 a running variance estimate shrunk
    towards 1/4; lambda_t uses outcomes 1..t-1 only."""
    x = np.asarray(x, dtype=float)
    t = np.arange(1, x.shape[-1] + 1, dtype=float)
    mean = (0.5 + np.cumsum(x, axis=-1)) / (t + 1.0)
    variance = (0.25 + np.cumsum((x - mean) ** 2, axis=-1)) / (t + 1.0)
    before = np.concatenate([np.full(x.shape[:-1] + (1,), 0.25), variance[..., :-1]], axis=-1)
    return np.sqrt(2.0 * np.log(2.0 / alpha) / (before * t * np.log1p(t)))


def log_capital(x: np.ndarray, m: np.ndarray | float, *, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """log K_t(m) after each outcome: (..., T) for a scalar m, or (..., G, T) for a grid of G candidates."""
    x = np.asarray(x, dtype=float)
    stakes = plugin_stakes(x, alpha=alpha)
    m_arr = np.asarray(m, dtype=float)
    if m_arr.ndim:
        x, stakes = x[..., None, :], stakes[..., None, :]
        m_arr = m_arr[:, None]
    up = np.minimum(stakes, _STAKE_CAP / np.maximum(m_arr, 1e-12))
    down = np.minimum(stakes, _STAKE_CAP / np.maximum(1.0 - m_arr, 1e-12))
    log_up = np.cumsum(np.log1p(up * (x - m_arr)), axis=-1)
    log_down = np.cumsum(np.log1p(-down * (x - m_arr)), axis=-1)
    return np.logaddexp(log_up, log_down) - np.log(2.0)


def rejects(x: np.ndarray, m: float = 0.5, *, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """(..., T) booleans: has the sequence left ``m`` out by each time (once out, out for good)?"""
    return np.maximum.accumulate(log_capital(x, m, alpha=alpha) >= np.log(1.0 / alpha), axis=-1)


@dataclass(frozen=True)
class Sequence:
    """The confidence sequence after all ``units`` outcomes: bounds in percent (NaN before any outcome) and
    whether 50% is out (the pair is decisive, and ``leader`` says which side: +1 above 50%, -1 below)."""

    units: int
    low: float
    high: float
    decisive: bool
    leader: int


def confidence_sequence(x: np.ndarray, *, alpha: float = DEFAULT_ALPHA) -> Sequence:
    """The running-intersection confidence sequence of one stream ``x`` (T,) of outcomes in [0, 1], read on
    a 0.2-point grid (the grid is processed in blocks, so long streams stay within memory)."""
    x = np.asarray(x, dtype=float)
    if x.size == 0:
        return Sequence(units=0, low=float("nan"), high=float("nan"), decisive=False, leader=0)
    grid = np.arange(_GRID_STEP / 2, 1.0, _GRID_STEP)
    threshold = np.log(1.0 / alpha)
    inside = np.empty(len(grid), dtype=bool)
    block = max(1, 2_000_000 // x.size)
    for start in range(0, len(grid), block):
        capital = log_capital(x, grid[start : start + block], alpha=alpha)
        inside[start : start + block] = capital.max(axis=-1) < threshold
    decisive = bool(rejects(x, 0.5, alpha=alpha)[-1])
    leader = 0 if not decisive else (1 if x.mean() > 0.5 else -1)
    if not inside.any():  # cannot happen for a bounded stream, but an empty set must not crash a page
        return Sequence(units=int(x.size), low=float("nan"), high=float("nan"), decisive=decisive, leader=leader)
    kept = grid[inside]
    low = max(0.0, float(kept.min()) - _GRID_STEP / 2)
    high = min(1.0, float(kept.max()) + _GRID_STEP / 2)
    return Sequence(units=int(x.size), low=100.0 * low, high=100.0 * high, decisive=decisive, leader=leader)
