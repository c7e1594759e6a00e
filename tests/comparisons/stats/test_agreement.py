"""Rater agreement on textbook examples and on a vote table computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from comparisons.stats import analyze, fleiss_kappa, krippendorff_alpha_nominal

from .helpers import votes_frame


def test_krippendorff_nominal_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units,
    # missing values; nominal alpha = 0.743.
    observers = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    counts = np.zeros((12, 5))
    for values in observers:
        for unit, value in enumerate(values):
            if value is not None:
                counts[unit, value - 1] += 1
    assert krippendorff_alpha_nominal(counts) == pytest.approx(0.743, abs=5e-4)


def test_fleiss_kappa_wikipedia_example():
    # Wikipedia, "Fleiss' kappa": 10 subjects, 14 raters, 5 categories; kappa = 0.210.
    counts = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert fleiss_kappa(counts) == pytest.approx(0.210, abs=5e-4)
    assert fleiss_kappa(np.array([[2, 1], [1, 0]])) is None  # 3 ratings on one unit, 1 on the other


def test_vote_table_agreement_by_hand():
    # Two comparisons rated by three raters. p1: r1 A, r2 A, r3 B. p2: r1 tie, r2 tie, r3 tie.
    rows = [
        ("p1", "A", "B", "A", "r1"),
        ("p1", "B", "A", "A", "r2"),
        ("p1", "A", "B", "B", "r3"),
        ("p2", "A", "B", "tie", "r1"),
        ("p2", "B", "A", "tie", "r2"),
        ("p2", "A", "B", "tie", "r3"),
    ]
    frame = votes_frame(rows, columns=("prompt_id", "model_a", "model_b", "winner", "rater"))
    agreement = analyze(frame, n_boot=0)["agreement"]
    # Coincidences: p1 has 2 agreeing ordered pairs of 6, p2 6 of 6 -> observed disagreement 4/2 = 2;
    # values A:2, B:1, tie:3 of 6 -> expected (36 - 4 - 1 - 9) / 5 = 4.4; alpha = 1 - 2 / 4.4.
    assert agreement["krippendorff_alpha"] == pytest.approx(1 - 2 / 4.4)
    # Fleiss: P1 = (4 + 1 - 3) / 6 = 1/3, P2 = 1, P = 2/3; p = (1/3, 1/6, 1/2) -> Pe = 14/36.
    assert agreement["fleiss_kappa"] == pytest.approx((2 / 3 - 14 / 36) / (1 - 14 / 36))
    raters = {r["rater"]: r for r in agreement["raters"]}
    assert raters["r1"]["agreement"] == 100.0 and raters["r1"]["units"] == 1  # on p1 the others split
    assert raters["r3"]["agreement"] == pytest.approx(50.0) and raters["r3"]["units"] == 2
    assert agreement["units"] == 2 and agreement["units_multi_rated"] == 2


def test_single_ratings_give_no_agreement():
    frame = votes_frame([("p1", "A", "B", "A"), ("p2", "A", "B", "B")])
    agreement = analyze(frame, n_boot=0)["agreement"]
    assert agreement["krippendorff_alpha"] is None and agreement["fleiss_kappa"] is None
    assert agreement["raters"] == []
