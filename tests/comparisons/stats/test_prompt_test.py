"""The p-value keeps its level when several raters judge each prompt (simulation against known truth).

Votes on one prompt are correlated: some prompts favour one model, some the other. A test that
counts votes as independent (the old exact sign test on all decisive votes) rejects a true 50% win
rate far more often than 5% when each prompt has three votes; the sign-flip test over prompts must
not, and with one vote per prompt it must lose no power against the old test.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binom

from comparisons.stats.signflip import sign_flip_p_values

PROMPTS = 252  # the Self-Instruct user-oriented set
STUDIES = 2000


def simulate(rng: np.random.Generator, *, mean: float, votes_per_prompt: int, concentration: float = 1.0):
    """Per-prompt wins and losses of STUDIES studies: each prompt's win probability ~ Beta, 10% ties."""
    a, b = concentration * mean, concentration * (1.0 - mean)
    q = rng.beta(a, b, size=(STUDIES, PROMPTS))
    tie = rng.random((STUDIES, PROMPTS, votes_per_prompt)) < 0.1
    win = ~tie & (rng.random((STUDIES, PROMPTS, votes_per_prompt)) < q[..., None])
    loss = ~tie & ~win
    return win.sum(axis=2), loss.sum(axis=2)


def prompt_test(wins: np.ndarray, losses: np.ndarray) -> np.ndarray:
    study = np.repeat(np.arange(STUDIES), PROMPTS)
    return sign_flip_p_values(study, (wins - losses).ravel(), STUDIES)


def vote_sign_test(wins: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """The old test: an exact two-sided binomial test on all decisive votes, as if independent."""
    w, n = wins.sum(axis=1), (wins + losses).sum(axis=1)
    tail = np.minimum(binom.cdf(w, n, 0.5), binom.sf(w - 1, n, 0.5))
    return np.minimum(1.0, 2.0 * tail)


def test_type_one_error_with_three_raters_per_prompt_and_heterogeneous_prompts():
    # Each prompt's win probability ~ Beta(0.5, 0.5): many prompts clearly favour one side, and on
    # average neither model is better (true win rate 50%).
    wins, losses = simulate(np.random.default_rng(11), mean=0.5, votes_per_prompt=3)
    new = (prompt_test(wins, losses) < 0.05).mean()
    old = (vote_sign_test(wins, losses) < 0.05).mean()
    assert new <= 0.06
    assert old > 0.10  # the vote-level test is wrong here: it is what this replaced


def test_one_vote_per_prompt_loses_no_power_against_the_old_sign_test():
    # True win rate 57%, heterogeneous prompts, one vote each: the two tests are the same test.
    wins, losses = simulate(np.random.default_rng(12), mean=0.57, votes_per_prompt=1)
    new = (prompt_test(wins, losses) < 0.05).mean()
    old = (vote_sign_test(wins, losses) < 0.05).mean()
    assert new >= old - 0.005
    assert 0.3 < new < 0.95  # a case where power matters
    # And it is the exact binomial test itself, study by study.
    assert np.allclose(prompt_test(wins, losses), vote_sign_test(wins, losses))
