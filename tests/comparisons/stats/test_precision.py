"""The precision tracker: half-widths agree with the bootstrap, and projections come true in simulation."""

from __future__ import annotations

import numpy as np
import pytest

from comparisons.stats import winrate_ci
from comparisons.stats.precision import about, precision_project, precision_sentence


def study(rng: np.random.Generator, *, prompts: int, k: int, spread: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt (wins, votes) of a pair over ``prompts`` prompts with ``k`` votes each; each prompt has its own
    chance for the first model (log-odds spread ``spread``), 58% on average."""
    lean = 1 / (1 + np.exp(-(0.35 + spread * rng.standard_normal(prompts) / 2)))
    return rng.binomial(k, lean).astype(float), np.full(prompts, float(k))


def project(wins: np.ndarray, n: np.ndarray, target: float | None = None):
    return precision_project(
        cell_pair=np.zeros(len(n), dtype=int), cell_score=wins, cell_votes=n, n_pairs=1, target_half_width=target
    )


def test_the_half_width_matches_the_bootstrap_over_prompts():
    rng = np.random.default_rng(1)
    wins, n = study(rng, prompts=252, k=3)
    tracked = project(wins, n)
    boot = winrate_ci(wins, n - wins, np.zeros_like(n), n_boot=3000, method="percentile")
    assert tracked.win_rate[0] == pytest.approx(boot["win_rate"])
    assert tracked.half_width[0] == pytest.approx((boot["ci_high"] - boot["ci_low"]) / 2, rel=0.1)


def test_votes_on_one_prompt_count_for_less_than_independent_votes():
    # 600 votes either way: on 200 prompts that each favour one side (3 votes agreeing), or on 600 prompts.
    rng = np.random.default_rng(2)
    clustered = project(*study(rng, prompts=200, k=3, spread=8.0)).half_width[0]
    independent = project(*study(rng, prompts=600, k=1, spread=8.0)).half_width[0]
    assert clustered > 1.4 * independent


def test_the_projected_votes_reach_the_target():
    # From 150 prompts × 3 votes, project the votes that give ±4 points; then collect that many in fresh
    # studies (same design): their half-widths land on the target.
    rng = np.random.default_rng(3)
    first = project(*study(rng, prompts=150, k=3), target=4.0)
    assert first.half_width[0] > 4.0
    needed = int(first.votes_needed[0])
    assert first.votes_more[0] == needed - 450
    reached = [project(*study(rng, prompts=needed // 3, k=3)).half_width[0] for _ in range(200)]
    assert np.mean(reached) == pytest.approx(4.0, rel=0.12)


def test_edge_cases_a_user_meets():
    unanimous = project(np.array([1.0, 1.0, 1.0]), np.array([1.0, 1.0, 1.0]), target=5.0)
    assert unanimous.half_width[0] > 10  # three wins in three votes is not precise
    ties = project(np.full(10, 0.5), np.ones(10), target=5.0)
    assert ties.half_width[0] > 5 and ties.votes_more[0] > 0  # nor are ten ties
    one_prompt = project(np.array([2.0]), np.array([3.0]), target=5.0)
    assert np.isnan(one_prompt.half_width[0]) and np.isnan(one_prompt.votes_more[0])
    done = project(*study(np.random.default_rng(4), prompts=2000, k=3), target=5.0)
    assert done.half_width[0] < 5 and done.votes_more[0] == 0
    no_votes = precision_project(
        cell_pair=np.array([], dtype=int), cell_score=np.array([]), cell_votes=np.array([]), n_pairs=2
    )
    assert list(no_votes.votes) == [0, 0] and np.isnan(no_votes.half_width).all()
    with pytest.raises(ValueError, match="positive"):
        project(np.array([1.0, 0.0]), np.array([1.0, 1.0]), target=0.0)


def test_the_sentence():
    assert (
        precision_sentence(
            model_a="text-davinci-003", model_b="Alpaca 7B", votes=540, half_width=6.08, target=5.0, votes_more=296
        )
        == "text-davinci-003 vs Alpaca 7B: ±6.1 points after 540 votes; about 300 more to reach ±5"
    )
    assert precision_sentence(model_a="A", model_b="B", votes=900, half_width=4.2, target=5, votes_more=0) == (
        "A vs B: ±4.2 points after 900 votes; ±5 reached"
    )
    assert precision_sentence(model_a="A", model_b="B", votes=90, half_width=12.0, target=2.5, votes_more=1930.0,
                              room=400) == (
        "A vs B: ±12.0 points after 90 votes; about 1900 more to reach ±2.5, more than the 400 this campaign can "
        "still take"
    )  # fmt: skip
    assert precision_sentence(model_a="A", model_b="B", votes=1, half_width=None, target=5, votes_more=None) == (
        "A vs B: 1 vote so far, on too few prompts to measure precision yet"
    )
    assert precision_sentence(model_a="A", model_b="B", votes=50, half_width=9.0, target=None, votes_more=None) == (
        "A vs B: ±9.0 points after 50 votes"
    )
    assert [about(x) for x in (0, 7, 42.1, 296, 1234, 98765)] == [0, 7, 42, 300, 1200, 99000]
