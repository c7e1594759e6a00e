"""Length-controlled win rate, checked by simulation against known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from comparisons.stats import analyze, format_text

from .helpers import pair_votes, votes_frame


def study(
    rng: np.random.Generator,
    *,
    a_better: float,
    longer_bias: float,
    prompts: int = 252,
    k: int = 3,
    graded: bool = True,
):
    """A vs B, A's answers usually longer (by 400 characters on average, sometimes shorter).

    With a length bias (``longer_bias`` > 0.5, equally good models) a vote goes to the longer answer
    with probability ``longer_bias`` on average: ``graded`` raters lean more the bigger the difference
    (0.5 + (longer_bias - 0.5) * 1.25 * tanh(|diff| / 250): about ``longer_bias`` at the typical
    difference), others always with the same probability. Without one (``longer_bias`` = 0.5), A wins
    with probability ``a_better``.
    """
    diff = rng.normal(400, 250, prompts)
    rows = []
    for p in range(prompts):
        lean = 0.5 + (longer_bias - 0.5) * (1.25 * np.tanh(abs(diff[p]) / 250) if graded else 1.0)
        for _ in range(k):
            if longer_bias != 0.5:
                longer_wins = rng.random() < lean
                a_wins = longer_wins if diff[p] > 0 else not longer_wins
            else:
                a_wins = rng.random() < a_better
            length_a, length_b = 1000 + max(diff[p], 0.0), 1000 + max(-diff[p], 0.0)
            model_a, model_b = ("A", "B") if rng.random() < 0.5 else ("B", "A")
            lengths = (length_a, length_b) if model_a == "A" else (length_b, length_a)
            rows.append((f"p{p}", model_a, model_b, "A" if a_wins else "B", round(lengths[0]), round(lengths[1])))
    return pd.DataFrame(rows, columns=["prompt_id", "model_a", "model_b", "winner", "length_a", "length_b"])


def test_raters_who_favour_the_longer_answer_do_not_make_a_model_better():
    # Equally good models; raters pick the longer answer 80% of the time. The raw win rate of the
    # usually longer model is near 80%, the length-controlled one near 50%, its interval covering 50%.
    rng = np.random.default_rng(5)
    raw, controlled, covered = [], [], 0
    for index in range(12):
        pair = analyze(study(rng, a_better=0.5, longer_bias=0.8), baseline="B", n_boot=300, seed=index)["pairs"][0]
        raw.append(pair["win_rate"])
        controlled.append(pair["lc_win_rate"])
        covered += pair["lc_ci_low"] <= 50.0 <= pair["lc_ci_high"]
        assert pair["ci_low"] > 60.0  # the raw interval is far from 50%
    assert np.mean(raw) == pytest.approx(79.0, abs=3.0)
    assert np.mean(controlled) == pytest.approx(50.0, abs=4.0)
    assert covered >= 10
    # Raters who lean to the longer answer by the same 80% however small the difference fit the
    # logistic curve less well: the correction is then partial (about 54% on average), still far from 80%.
    step = [
        analyze(study(rng, a_better=0.5, longer_bias=0.8, graded=False), baseline="B", n_boot=0)["pairs"][0]
        for _ in range(12)
    ]
    assert np.mean([p["win_rate"] for p in step]) > 74.0
    assert np.mean([p["lc_win_rate"] for p in step]) == pytest.approx(50.0, abs=8.0)


def test_without_a_length_bias_the_controlled_rate_is_the_raw_rate():
    # A really is better (70%) and raters ignore length: controlling for length changes little.
    rng = np.random.default_rng(6)
    pairs = [
        analyze(study(rng, a_better=0.7, longer_bias=0.5), baseline="B", n_boot=200, seed=i)["pairs"][0]
        for i in range(6)
    ]
    assert np.mean([p["win_rate"] for p in pairs]) == pytest.approx(70.0, abs=3.0)
    assert np.mean([p["lc_win_rate"] for p in pairs]) == pytest.approx(70.0, abs=6.0)


def test_mirrored_for_the_other_model_and_null_without_lengths():
    frame = study(np.random.default_rng(7), a_better=0.5, longer_bias=0.8, prompts=60)
    a_vs_b = analyze(frame, baseline="B", n_boot=200, seed=0)["pairs"][0]
    b_vs_a = analyze(frame, baseline="A", n_boot=200, seed=0)["pairs"][0]
    assert b_vs_a["lc_win_rate"] == pytest.approx(100.0 - a_vs_b["lc_win_rate"])
    assert b_vs_a["lc_ci_low"] == pytest.approx(100.0 - a_vs_b["lc_ci_high"])
    text = format_text(analyze(frame, baseline="B", n_boot=200, seed=0))
    assert "length-controlled" in text and f"{a_vs_b['lc_win_rate']:.2f}" in text
    plain = analyze(votes_frame(pair_votes("A", "B", 30, 20, 5)), n_boot=100)["pairs"][0]
    assert plain["lc_win_rate"] is None and plain["lc_ci_low"] is None and plain["lc_ci_high"] is None
