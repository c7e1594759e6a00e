"""Coverage by simulation: about 95% of the 95% intervals contain the true win rate."""

from __future__ import annotations

import numpy as np
import pytest

from comparisons.stats import winrate_ci


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_cluster_bootstrap_covers_the_true_win_rate(method):
    # 400 studies of 150 prompts with 3 votes each. Each prompt has its own difficulty (votes on one
    # prompt are correlated), 10% of votes are ties, so the true win rate (ties half) is
    # 0.9 * E[q] + 0.05 = 0.9 * 0.4 + 0.05 = 41%.
    rng = np.random.default_rng(20260101)
    truth = 41.0
    covered = 0
    studies = 400
    for study in range(studies):
        q = rng.beta(2, 3, size=150)
        tie = rng.random((150, 3)) < 0.1
        win = ~tie & (rng.random((150, 3)) < q[:, None])
        loss = ~tie & ~win
        result = winrate_ci(win.sum(1), loss.sum(1), tie.sum(1), n_boot=400, seed=study, method=method)
        covered += result["ci_low"] <= truth <= result["ci_high"]
    assert 0.92 <= covered / studies <= 0.98
