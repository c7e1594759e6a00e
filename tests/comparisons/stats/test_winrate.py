"""Win rates, their cluster-bootstrap intervals and the prompt-level test, on cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from comparisons.stats import analyze, headline, sign_flip_p, winrate_ci

from .helpers import pair_votes, votes_frame


def only_pair(result: dict) -> dict:
    assert len(result["pairs"]) == 1
    return result["pairs"][0]


def test_alpacaeval_convention_ties_count_half():
    # 205 wins, 584 losses, 16 ties out of 805: (205 + 16 / 2) / 805 = 26.46%.
    frame = votes_frame(pair_votes("X", "Y", 205, 584, 16))
    pair = only_pair(analyze(frame, baseline="Y", n_boot=2000, seed=1))
    assert pair["model"] == "X" and pair["baseline"] == "Y"
    assert (pair["n"], pair["wins"], pair["losses"], pair["ties"]) == (805, 205, 584, 16)
    assert pair["win_rate"] == pytest.approx(100 * 213 / 805)
    assert round(pair["win_rate"], 2) == 26.46
    assert pair["win_rate_no_ties"] == pytest.approx(100 * 205 / 789)
    # Normal approximation of the standard error of a mean of 805 scores in {0, 0.5, 1}.
    scores = np.array([1.0] * 205 + [0.0] * 584 + [0.5] * 16)
    se = 100 * scores.std(ddof=1) / math.sqrt(805)
    assert pair["se"] == pytest.approx(se, rel=0.1)
    assert pair["ci_low"] == pytest.approx(pair["win_rate"] - 1.96 * se, abs=0.6)
    assert pair["ci_high"] == pytest.approx(pair["win_rate"] + 1.96 * se, abs=0.6)
    assert pair["p_value"] < 0.001
    text = headline(pair)
    assert text.startswith("Model X wins 26.5% of comparisons against Y (95% CI ")
    assert text.endswith(", p < 0.001; 205 wins, 16 ties, 584 losses)")


def test_small_table_by_hand():
    # A vs B on three prompts: A wins p1 twice, B wins p2, p3 is a tie and a both_bad.
    frame = votes_frame(
        [
            ("p1", "A", "B", "A"),
            ("p1", "B", "A", "A"),
            ("p2", "A", "B", "B"),
            ("p3", "A", "B", "tie"),
            ("p3", "B", "A", "both_bad"),
        ]
    )
    pair = only_pair(analyze(frame, n_boot=0))
    assert (pair["model"], pair["baseline"]) == ("A", "B")
    assert (pair["n"], pair["prompts"], pair["wins"], pair["losses"], pair["ties"], pair["both_bad"]) == (
        5,
        3,
        2,
        1,
        2,
        1,
    )
    assert pair["win_rate"] == pytest.approx(100 * 3 / 5)  # (2 + 2/2) / 5
    assert pair["win_rate_no_ties"] == pytest.approx(100 * 2 / 3)
    assert pair["ci_low"] is None and pair["se"] is None  # no bootstrap asked for

    excluded = only_pair(analyze(frame, n_boot=0, both_bad="exclude"))
    assert (excluded["n"], excluded["ties"], excluded["both_bad"]) == (4, 1, 1)
    assert excluded["win_rate"] == pytest.approx(100 * 2.5 / 4)


def test_baseline_orients_every_pair_and_swapping_gives_the_complement():
    frame = votes_frame(pair_votes("A", "B", 6, 3, 1) + pair_votes("C", "B", 2, 7, 1, start=100))
    against_b = analyze(frame, baseline="B", n_boot=500, seed=3)["pairs"]
    assert [(e["model"], e["baseline"]) for e in against_b] == [("A", "B"), ("C", "B")]
    assert against_b[0]["win_rate"] == pytest.approx(65.0)
    against_a = analyze(frame, baseline="A", n_boot=500, seed=3)["pairs"]
    assert [(e["model"], e["baseline"]) for e in against_a] == [("B", "A")]
    assert against_a[0]["win_rate"] == pytest.approx(35.0)
    assert (against_a[0]["wins"], against_a[0]["losses"]) == (3, 6)
    assert against_a[0]["ci_low"] == pytest.approx(100 - against_b[0]["ci_high"])
    everything = analyze(frame, n_boot=0)["pairs"]
    assert [(e["model"], e["baseline"]) for e in everything] == [("A", "B"), ("B", "C")]


def test_one_vote_per_prompt_gives_the_exact_sign_test():
    # Per-prompt wins minus losses of +1/-1: the sign-flip distribution is the binomial one.
    # 8 wins and 2 losses: 2 * (1 + 10 + 45) / 2**10.
    assert sign_flip_p([1] * 8 + [-1] * 2) == pytest.approx(2 * 56 / 1024)
    assert sign_flip_p([1] * 5 + [-1] * 5) == pytest.approx(1.0)
    assert sign_flip_p([0, 0]) == 1.0
    frame = votes_frame(pair_votes("A", "B", 8, 2, 5))
    assert only_pair(analyze(frame, n_boot=0))["p_value"] == pytest.approx(2 * 56 / 1024)  # ties left out


def test_p_value_counts_prompts_not_votes():
    # 100 prompts won 60-40, each judged alike by five raters: five agreeing votes on a prompt are one
    # prompt's verdict, so the p-value is the one-vote-per-prompt sign test's (0.057), as the interval
    # says (it stays the same width). Counting 500 independent votes would give p = 9e-6.
    single = pair_votes("A", "B", 60, 40, 0)
    repeated = [row for row in single for _ in range(5)]
    one = only_pair(analyze(votes_frame(single), n_boot=1000, seed=0))
    five = only_pair(analyze(votes_frame(repeated), n_boot=1000, seed=0))
    assert one["p_value"] == pytest.approx(scipy_stats.binomtest(60, 100).pvalue)
    assert five["p_value"] == pytest.approx(one["p_value"])
    assert 0.05 < five["p_value"] < 0.06
    assert five["ci_low"] <= 50.0 < five["ci_high"]  # the interval just reaches 50%, as p just misses 0.05


def test_bootstrap_is_seeded_and_reproducible():
    frame = votes_frame(pair_votes("A", "B", 30, 20, 10))
    first = only_pair(analyze(frame, n_boot=300, seed=7))
    again = only_pair(analyze(frame, n_boot=300, seed=7))
    other = only_pair(analyze(frame, n_boot=300, seed=8))
    assert first == again
    assert (first["ci_low"], first["ci_high"]) != (other["ci_low"], other["ci_high"])


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_one_vote_per_prompt_matches_scipy_bootstrap(method):
    # With one vote per prompt the cluster bootstrap is the ordinary bootstrap of the mean score, and
    # drawing prompts with the same generator reproduces scipy's percentile and BCa intervals exactly.
    rng = np.random.default_rng(11)
    scores = rng.choice([0.0, 0.5, 1.0], size=90, p=[0.45, 0.15, 0.4])
    mine = winrate_ci(scores == 1.0, scores == 0.0, scores == 0.5, n_boot=2000, seed=5, method=method)
    reference = scipy_stats.bootstrap(
        (scores,),
        np.mean,
        n_resamples=2000,
        rng=np.random.default_rng(5),
        method="BCa" if method == "bca" else "percentile",
        vectorized=True,
    )
    assert mine["win_rate"] == pytest.approx(100 * scores.mean())
    assert mine["ci_low"] == pytest.approx(100 * reference.confidence_interval.low)
    assert mine["ci_high"] == pytest.approx(100 * reference.confidence_interval.high)
    assert mine["se"] == pytest.approx(100 * reference.standard_error)


def test_bootstrap_resamples_prompts_not_votes():
    # Five identical votes per prompt carry no more information than one: the interval must not shrink
    # (resampling single votes would make it about sqrt(5) times narrower).
    single = pair_votes("A", "B", 40, 50, 10)
    repeated = [row for row in single for _ in range(5)]
    one = only_pair(analyze(votes_frame(single), n_boot=2000, seed=2, ci="percentile"))
    five = only_pair(analyze(votes_frame(repeated), n_boot=2000, seed=2, ci="percentile"))
    assert five["win_rate"] == pytest.approx(one["win_rate"])
    assert five["n"] == 5 * one["n"] and five["prompts"] == one["prompts"]
    assert five["ci_low"] == pytest.approx(one["ci_low"])
    assert five["ci_high"] == pytest.approx(one["ci_high"])


def test_unanimous_pair_gets_an_exact_interval_not_a_zero_width_one():
    # Twelve prompts all won: every bootstrap replicate says 100%, a zero-width "interval". Instead,
    # the exact Clopper-Pearson interval for 12 successes in 12 prompts: [0.025 ** (1/12), 1].
    pair = only_pair(analyze(votes_frame(pair_votes("A", "B", 12, 0, 0)), n_boot=500, seed=0))
    assert pair["win_rate"] == 100.0
    assert pair["ci_method"] == "clopper_pearson"
    assert pair["ci_low"] == pytest.approx(100 * 0.025 ** (1 / 12))
    assert pair["ci_high"] == 100.0
    assert pair["se"] is None
    assert "95% CI 73.5–100.0% exact over 12 prompts" in headline(pair)


def test_few_prompts_get_an_exact_interval_and_one_prompt_none():
    # Three votes on one prompt: one cluster, no spread to estimate: no interval at all.
    one_prompt = votes_frame([("p1", "A", "B", "A")] * 3)
    pair = only_pair(analyze(one_prompt, n_boot=500, seed=0))
    assert pair["ci_method"] == "too_few_prompts"
    assert pair["ci_low"] is None and pair["ci_high"] is None
    assert "CI n/a: too few prompts" in headline(pair)
    # Six prompts, 4 won and 2 lost: fewer than 10 prompts, so Clopper-Pearson for 4 of 6.
    pair = only_pair(analyze(votes_frame(pair_votes("A", "B", 4, 2, 0)), n_boot=500, seed=0))
    exact = scipy_stats.binomtest(4, 6).proportion_ci(method="exact")
    assert pair["ci_method"] == "clopper_pearson"
    assert (pair["ci_low"], pair["ci_high"]) == pytest.approx((100 * exact.low, 100 * exact.high))
    # Enough prompts and a spread: the bootstrap, labelled with its method.
    pair = only_pair(analyze(votes_frame(pair_votes("A", "B", 30, 20, 10)), n_boot=500, seed=0, ci="percentile"))
    assert pair["ci_method"] == "percentile"
    assert pair["ci_high"] - pair["ci_low"] > 10


def test_no_category_has_a_zero_width_interval():
    frame = votes_frame(pair_votes("A", "B", 9, 1, 0) + pair_votes("A", "B", 3, 3, 0, start=50))
    frame["category"] = ["Gmail"] * 5 + ["Netflix"] * 5 + ["Solo"] * 6
    frame.loc[10:, "prompt_id"] = "p-solo"  # six votes on a single prompt
    result = analyze(frame, baseline="B", n_boot=300, seed=0)
    by_category = {c["category"]: c for c in result["categories"]}
    assert by_category["Gmail"]["ci_method"] == "clopper_pearson"  # 5 of 5 won: exact
    assert by_category["Gmail"]["ci_low"] < by_category["Gmail"]["ci_high"]
    assert by_category["Solo"]["ci_method"] == "too_few_prompts"
    for entry in result["categories"]:
        assert entry["ci_low"] is None or entry["ci_low"] < entry["ci_high"]


def test_per_category_breakdown():
    rows = pair_votes("A", "B", 9, 1, 0)
    frame = votes_frame(rows)
    frame["category"] = ["Gmail"] * 5 + ["Netflix"] * 5
    result = analyze(frame, baseline="B", n_boot=200, seed=0)
    by_category = {c["category"]: c for c in result["categories"]}
    assert by_category["Gmail"]["win_rate"] == 100.0
    assert (by_category["Netflix"]["wins"], by_category["Netflix"]["losses"]) == (4, 1)
    assert by_category["Netflix"]["win_rate"] == pytest.approx(80.0)
    assert by_category["Netflix"]["model"] == "A"


def test_flagged_votes_are_excluded_on_request():
    frame = votes_frame(pair_votes("A", "B", 6, 4, 0))
    frame["attention_failed"] = ["true"] * 3 + ["false"] * 7
    frame["seconds"] = [1.0] * 5 + [30.0] * 5
    assert only_pair(analyze(frame, n_boot=0))["n"] == 10
    cleaned = analyze(frame, n_boot=0, exclude_flagged=True)
    assert only_pair(cleaned)["wins"] == 3
    assert cleaned["votes"] == {"input": 10, "excluded": 3, "used": 7, "prompts": 7, "models": ["A", "B"]}
    fast_removed = analyze(frame, n_boot=0, min_seconds=5)
    assert (only_pair(fast_removed)["wins"], only_pair(fast_removed)["losses"]) == (1, 4)


def test_pairs_that_never_met_are_absent():
    frame = pd.concat(
        [votes_frame(pair_votes("A", "B", 3, 2, 0)), votes_frame(pair_votes("C", "D", 1, 1, 0, start=10))]
    )
    result = analyze(frame, n_boot=0)
    assert [(e["model"], e["baseline"]) for e in result["pairs"]] == [("A", "B"), ("C", "D")]
    matrix = result["win_rate_matrix"]
    assert matrix["models"] == ["A", "B", "C", "D"]
    assert matrix["values"][0][1] == pytest.approx(60.0)
    assert matrix["values"][1][0] == pytest.approx(40.0)
    assert matrix["values"][0][2] is None
    assert result["settings"]["ranking_connected"] is False


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"seed": -1}, "seed must be a whole number"),
        ({"n_boot": -1}, "bootstrap rounds must be a whole number"),
        ({"min_seconds": float("nan")}, "min_seconds must be a finite number"),
        ({"min_seconds": float("-inf")}, "min_seconds must be a finite number"),
        ({"confidence": float("nan")}, "confidence level must be between 0 and 1"),
    ],
)
def test_bad_settings_are_refused_before_any_work(options, message):
    from comparisons.stats import VoteTableError

    frame = votes_frame(pair_votes("A", "B", 3, 2, 0))
    frame["seconds"] = 10.0
    with pytest.raises(VoteTableError, match=message):
        analyze(frame, **options)
