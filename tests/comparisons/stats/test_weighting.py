"""`analyze` on the votes of an adaptively routed campaign: estimates weighted by each vote's routing probability.

The router itself and the unbiasedness of the weighted totals are checked in test_routing.py; here the same
weighting reaches the analysis that the results page, `analyze` and the summary export show."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from comparisons.stats import VoteTableError, analyze, format_text, routing, summary_rows
from comparisons.stats.report import SUMMARY_COLUMNS

A, B, C = "zebra-model-7", "quokka-llm-13b", "okapi-chat-3"  # alphabetical order: okapi, quokka, zebra


def routed_table() -> pd.DataFrame:
    """Eight votes on A against B with their routing probabilities, and four on A against C."""
    rows = [
        # prompt, model_a, model_b, winner, routing_probability
        ("p1", A, B, A, 0.5),
        ("p1", A, B, B, 0.25),
        ("p2", A, B, A, 0.5),
        ("p2", A, B, "tie", 0.1),
        ("p3", A, B, B, 0.8),
        ("p3", A, B, A, 0.5),
        ("p4", A, B, B, 0.2),
        ("p4", A, B, A, 1.0),
        ("p1", A, C, A, 0.05),
        ("p2", A, C, C, 0.05),
        ("p3", A, C, A, 0.1),
        ("p4", A, C, A, 0.1),
    ]
    return pd.DataFrame(rows, columns=["prompt_id", "model_a", "model_b", "winner", "routing_probability"])


def expected_rate(frame: pd.DataFrame, model: str, other: str) -> float:
    mine = frame[(frame.model_a == model) & (frame.model_b == other)]
    score = np.where(mine.winner == model, 1.0, np.where(mine.winner == "tie", 0.5, 0.0))
    weight = 1.0 / mine.routing_probability.to_numpy()
    return 100.0 * float((weight * score).sum() / weight.sum())


def entry(result: dict, model: str, baseline: str) -> dict:
    (found,) = [e for e in result["pairs"] if (e["model"], e["baseline"]) == (model, baseline)]
    return found


def test_each_pair_gets_the_inverse_probability_weighted_win_rate_beside_the_plain_one():
    frame = routed_table()
    result = analyze(frame, baseline=A, n_boot=400, seed=1)
    for other in (B, C):
        pair = entry(result, other, A)  # oriented for the other model against the baseline A
        assert pair["weighted_win_rate"] == pytest.approx(100.0 - expected_rate(frame, A, other))
        assert pair["weighted_ci_low"] <= pair["weighted_win_rate"] <= pair["weighted_ci_high"]
    # A against B: A wins 4 of 8 with a tie (plain 56.25%), but its wins were the likelier-served votes and
    # its losses the rarer ones: weighted, B leads (A 44.0%), and the weighted ranking puts B above A.
    pair = entry(result, B, A)
    assert pair["win_rate"] == pytest.approx(100 - 56.25)
    assert pair["weighted_win_rate"] == pytest.approx(100 - 100 * 12 / 27.25)
    assert [r["model"] for r in result["ranking"]][:2] == [A, B]
    assert [r["model"] for r in result["weighted_ranking"]][:2] == [B, A]
    assert {r["model"] for r in result["weighted_ranking"]} == {A, B, C}
    text = format_text(result)
    assert "routing-weighted" in text and "Ranking weighted by routing probability" in text
    row = dict(zip(SUMMARY_COLUMNS, summary_rows(result)[0], strict=True))
    assert row["weighted_win_rate"] == result["pairs"][0]["weighted_win_rate"]


def test_a_pair_with_a_vote_served_without_routing_gets_no_weighted_figures():
    frame = routed_table()
    frame.loc[frame.model_b == C, "routing_probability"] = [0.05, np.nan, 0.1, 0.1]
    result = analyze(frame, baseline=A, n_boot=100)
    assert entry(result, B, A)["weighted_win_rate"] is not None
    assert entry(result, C, A)["weighted_win_rate"] is None
    assert result["weighted_ranking"] == []  # a ranking mixing weighted and unweighted votes would mean nothing
    assert "No weighted ranking" in format_text(result)


def test_tables_without_probabilities_keep_exactly_the_keys_they_always_had():
    frame = routed_table()
    plain = analyze(frame.drop(columns="routing_probability"), n_boot=50)
    empty = analyze(frame.assign(routing_probability=""), n_boot=50)
    for result in (plain, empty):
        assert "weighted_ranking" not in result
        assert not any(key.startswith("weighted") for pair in result["pairs"] for key in pair)
    assert plain["pairs"] == empty["pairs"]  # and a published snapshot of such a campaign reproduces as it was


@pytest.mark.parametrize("bad", ["0", "1.5", "-0.2", "often", "inf", "nan"])
def test_a_routing_probability_outside_0_to_1_is_refused_with_its_line(bad):
    frame = routed_table().astype({"routing_probability": object})
    frame.loc[5, "routing_probability"] = bad
    with pytest.raises(VoteTableError, match=r"line 7: column 'routing_probability' must be a"):
        analyze(frame, first_line=2)


def simulated_tables(*, campaigns: int, votes: int, seed: int, batch: int = 20) -> list[pd.DataFrame]:
    """Vote tables of ``campaigns`` campaigns of three models (Elo 0, 50, 150) routed adaptively as the product
    routes them, 30 prompts, no ties; each vote with the probability its pair had of being served."""
    rng = np.random.default_rng(seed)
    names = np.array([C, B, A])  # strengths in this order
    strength = np.array([0.0, 50.0, 150.0]) / 400.0 * np.log(10.0)
    first, second = routing.all_pairs(3)
    p_first = expit(strength[first] - strength[second])
    score, games = np.zeros((campaigns, 3)), np.zeros((campaigns, 3))
    fit = routing.bt_fit_pairs(n_models=3, pair_first=first, pair_second=second, first_score=score, games=games)
    rows = np.repeat(np.arange(campaigns), batch)
    picks_all, wins_all, chance_all = [], [], []
    for _ in range(votes // batch):
        probs = routing.probabilities(fit, pair_first=first, pair_second=second)
        cumulative = np.cumsum(probs, axis=1)
        picks = np.minimum((cumulative[:, None, :] <= rng.random((campaigns, batch, 1))).sum(axis=2), 2)
        first_wins = rng.random((campaigns, batch)) < p_first[picks]
        np.add.at(score, (rows, picks.ravel()), first_wins.ravel().astype(float))
        np.add.at(games, (rows, picks.ravel()), 1.0)
        picks_all.append(picks)
        wins_all.append(first_wins)
        chance_all.append(np.take_along_axis(probs, picks, axis=1))
        fit = routing.bt_fit_pairs(
            n_models=3, pair_first=first, pair_second=second, first_score=score, games=games, theta0=fit.theta
        )
    picks, wins, chance = (np.concatenate(parts, axis=1) for parts in (picks_all, wins_all, chance_all))
    tables = []
    for c in range(campaigns):
        model_a, model_b = names[first[picks[c]]], names[second[picks[c]]]
        tables.append(
            pd.DataFrame(
                {
                    "prompt_id": rng.integers(0, 30, votes).astype(str),
                    "model_a": model_a,
                    "model_b": model_b,
                    "winner": np.where(wins[c], model_a, model_b),
                    "routing_probability": chance[c],
                }
            )
        )
    return tables


@pytest.mark.slow
def test_the_weighted_win_rates_and_ranking_of_routed_campaigns_average_to_the_truth():
    # 1,000 routed campaigns of 600 votes, analysed as the results page analyses them. The weighted estimates
    # average to the true win rates and Elo gaps within Monte Carlo error; the plain ones do not.
    truth_rate = {(B, C): 100 * expit(50 / 400 * np.log(10)), (A, C): 100 * expit(150 / 400 * np.log(10))}
    truth_rate[(A, B)] = 100 * expit(100 / 400 * np.log(10))
    plain, weighted, plain_gap, weighted_gap = [], [], [], []
    for frame in simulated_tables(campaigns=1000, votes=600, seed=4):
        result = analyze(frame, n_boot=0, categories=False)
        by_pair = {}
        for e in result["pairs"]:
            key = (e["model"], e["baseline"]) if (e["model"], e["baseline"]) in truth_rate else None
            if key is None:
                key = (e["baseline"], e["model"])
                by_pair[key] = (100 - e["win_rate"], 100 - e["weighted_win_rate"])
            else:
                by_pair[key] = (e["win_rate"], e["weighted_win_rate"])
        plain.append([by_pair[k][0] for k in truth_rate])
        weighted.append([by_pair[k][1] for k in truth_rate])
        plain_score = {r["model"]: r["score"] for r in result["ranking"]}
        weighted_score = {r["model"]: r["score"] for r in result["weighted_ranking"]}
        plain_gap.append([plain_score[A] - plain_score[B], plain_score[B] - plain_score[C]])
        weighted_gap.append([weighted_score[A] - weighted_score[B], weighted_score[B] - weighted_score[C]])
    truth = np.array(list(truth_rate.values()))

    def z(estimates: list[list[float]], target: np.ndarray) -> np.ndarray:
        values = np.array(estimates)
        return (values.mean(axis=0) - target) / (values.std(axis=0) / np.sqrt(len(values)))

    assert np.abs(z(weighted, truth)).max() < 3.5
    assert np.abs(z(plain, truth)).max() > 5
    assert np.abs(z(weighted_gap, np.array([100.0, 50.0]))).max() < 3.5
    assert np.abs(z(plain_gap, np.array([100.0, 50.0]))).max() > 5


def test_a_pair_whose_votes_were_all_left_out_as_both_bad_does_not_spoil_the_weighted_ranking():
    frame = pd.DataFrame(
        {
            "prompt_id": ["p1", "p2", "p1", "p2", "p3"],
            "model_a": [A, A, A, A, B],
            "model_b": [B, B, C, C, C],
            "winner": ["both_bad", "both_bad", A, C, B],
            "routing_probability": [0.5, 0.5, 0.2, 0.4, 1.0],
        }
    )
    result = analyze(frame, both_bad="exclude", n_boot=20)
    (met_only_in_both_bad,) = [e for e in result["pairs"] if {e["model"], e["baseline"]} == {A, B}]
    assert met_only_in_both_bad["weighted_win_rate"] is None  # A and B met only in votes left out
    assert all(r["score"] is not None for r in result["weighted_ranking"])
