"""Human raters against an automatic judge on the same comparisons: the judge's win rate, agreement (percent
and Cohen's kappa) with bootstrap intervals, and how far apart the two are on each comparison.

Pure numpy. Everything is oriented to one pair of models: a *score* is the first model's share of a win
(1 = it is better, 0 = the other one is, 0.5 = tie; an AlpacaEval judge's weighted preference gives the
values between). A *verdict* is the score in three categories: FIRST, SECOND or TIE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FIRST, SECOND, TIE = 0, 1, 2
N_VERDICTS = 3
NO_VERDICT = -1


def verdict_of_score(score: np.ndarray) -> np.ndarray:
    """FIRST above one half, SECOND below, TIE at exactly one half (an AlpacaEval preference of 1.5)."""
    score = np.asarray(score, dtype=float)
    return np.where(score > 0.5, FIRST, np.where(score < 0.5, SECOND, TIE)).astype(np.int64)


def majority_verdict(counts: np.ndarray) -> np.ndarray:
    """The raters' verdict per comparison from a (comparisons, 3) matrix of FIRST/SECOND/TIE vote counts:
    the strict majority, NO_VERDICT when two verdicts share the top or there is no vote."""
    counts = np.asarray(counts, dtype=np.int64).reshape(-1, N_VERDICTS)
    top = counts.max(axis=1)
    strict = (counts == top[:, None]).sum(axis=1) == 1
    return np.where(strict & (top > 0), counts.argmax(axis=1), NO_VERDICT).astype(np.int64)


def human_score(counts: np.ndarray) -> np.ndarray:
    """The raters' mean score per comparison (ties half a win); NaN without votes."""
    counts = np.asarray(counts, dtype=float).reshape(-1, N_VERDICTS)
    votes = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(votes > 0, (counts[:, FIRST] + 0.5 * counts[:, TIE]) / votes, np.nan)


def _kappa_rows(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Percent agreement and Cohen's kappa of each row of two (rows, units) verdict matrices (kappa NaN where
    it is undefined: both sides gave one and the same verdict to every unit)."""
    observed = (a == b).mean(axis=1)
    expected = sum((a == k).mean(axis=1) * (b == k).mean(axis=1) for k in range(N_VERDICTS))
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = np.where(expected < 1.0, (observed - expected) / (1.0 - expected), np.nan)
    return 100.0 * observed, kappa


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cohen's kappa of two verdict vectors of the same units; None when there is no unit or it is undefined."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if a.size == 0:
        return None
    kappa = float(_kappa_rows(a[None, :], b[None, :])[1][0])
    return None if np.isnan(kappa) else kappa


def _interval(values: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    """Percentile interval of bootstrap replicates, ignoring undefined ones; None when most are undefined."""
    finite = values[np.isfinite(values)]
    if values.size == 0 or finite.size < values.size / 2:
        return None, None
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class JudgePairStats:
    """One pair of models: the judge's and the raters' figures on the comparisons both judged."""

    comparisons: int
    judge_win_rate: float | None
    judge_ci_low: float | None
    judge_ci_high: float | None
    raters_win_rate: float | None
    agreement_units: int
    split: int
    agreement: float | None
    agreement_ci_low: float | None
    agreement_ci_high: float | None
    kappa: float | None
    kappa_ci_low: float | None
    kappa_ci_high: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return dict(self.__dict__)


def judge_pair_stats(
    *, counts: np.ndarray, judge_score: np.ndarray, rng: np.random.Generator, n_boot: int, confidence: float = 0.95
) -> JudgePairStats:
    """Judge against raters on the comparisons of one pair of models (one comparison per prompt).

    ``counts`` is (comparisons, 3): the raters' FIRST/SECOND/TIE votes ("both bad" counted as a tie), and
    ``judge_score`` the judge's score of the first model on each comparison. Win rates are in percent, the
    judge's with a percentile interval from ``n_boot`` resamples of the comparisons (that is, of prompts).
    Agreement compares the judge's verdict with the raters' strict majority, on the comparisons that have one
    (``split`` counts the others); percent and Cohen's kappa, each with a percentile interval from the same
    kind of resamples. Intervals are None with ``n_boot`` 0.
    """
    counts = np.asarray(counts, dtype=np.int64).reshape(-1, N_VERDICTS)
    judge_score = np.asarray(judge_score, dtype=float)
    n = judge_score.size
    humans = human_score(counts)
    voted = np.isfinite(humans)
    judge_rate = 100.0 * float(judge_score.mean()) if n else None
    judge_ci: tuple[float | None, float | None] = (None, None)
    if n and n_boot:
        judge_ci = _interval(100.0 * judge_score[rng.integers(0, n, size=(n_boot, n))].mean(axis=1), confidence)

    majority = majority_verdict(counts)
    usable = majority != NO_VERDICT
    human, judge = majority[usable], verdict_of_score(judge_score)[usable]
    m = int(usable.sum())
    agreement = kappa = None
    agreement_ci: tuple[float | None, float | None] = (None, None)
    kappa_ci: tuple[float | None, float | None] = (None, None)
    if m:
        agreement = 100.0 * float((human == judge).mean())
        kappa = cohen_kappa(human, judge)
        if n_boot:
            picks = rng.integers(0, m, size=(n_boot, m))
            percent, kappas = _kappa_rows(human[picks], judge[picks])
            agreement_ci, kappa_ci = _interval(percent, confidence), _interval(kappas, confidence)
    return JudgePairStats(
        comparisons=n,
        judge_win_rate=judge_rate,
        judge_ci_low=judge_ci[0],
        judge_ci_high=judge_ci[1],
        raters_win_rate=100.0 * float(humans[voted].mean()) if voted.any() else None,
        agreement_units=m,
        split=int(n - m),
        agreement=agreement,
        agreement_ci_low=agreement_ci[0],
        agreement_ci_high=agreement_ci[1],
        kappa=kappa,
        kappa_ci_low=kappa_ci[0],
        kappa_ci_high=kappa_ci[1],
    )


def disagreement(*, counts: np.ndarray, judge_score: np.ndarray) -> np.ndarray:
    """How far the judge is from the raters on each comparison: |raters' mean score − judge's score|, from 0
    (same) to 1 (every rater picked one answer, the judge the other); NaN where no rater voted."""
    return np.abs(human_score(counts) - np.asarray(judge_score, dtype=float))
