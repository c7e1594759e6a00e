"""Validation of vote tables: every problem is named (column, line, value)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from comparisons.stats import VoteTableError, analyze, votes_prepare

from .helpers import votes_frame


def test_missing_column_is_named():
    frame = pd.DataFrame({"prompt_id": ["p1"], "model_a": ["A"], "winner": ["A"]})
    with pytest.raises(VoteTableError, match="no column 'model_b'"):
        votes_prepare(frame)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (("p2", "A", "B", "C"), "winner must be model_a, model_b, 'tie' or 'both_bad'"),
        (("p2", "A", "A", "A"), "model_a and model_b are the same model"),
        (("", "A", "B", "A"), "prompt_id is empty"),
        (("p2", "tie", "B", "B"), "'tie' is a verdict and cannot be a model name"),
    ],
)
def test_bad_row_is_named_with_its_line(row, message):
    frame = votes_frame([("p1", "A", "B", "A"), row])
    with pytest.raises(VoteTableError, match="line 3") as caught:
        votes_prepare(frame, first_line=2)
    assert message in str(caught.value)
    with pytest.raises(VoteTableError, match="row 1"):
        votes_prepare(frame)


def test_optional_columns_are_checked():
    frame = votes_frame([("p1", "A", "B", "A"), ("p2", "A", "B", "B")])
    frame["left_model"] = ["A", "C"]
    with pytest.raises(VoteTableError, match="left_model 'C' is neither model_a"):
        votes_prepare(frame)
    frame["left_model"] = ["A", ""]
    frame["attention_failed"] = ["false", "maybe"]
    with pytest.raises(VoteTableError, match="'attention_failed' must be a boolean"):
        votes_prepare(frame)
    frame["attention_failed"] = ["False", "1"]
    frame["seconds"] = ["3.5", "-1"]
    with pytest.raises(VoteTableError, match="'seconds' must be a non-negative number"):
        votes_prepare(frame)


def test_whitespace_and_missing_values_are_normalised():
    frame = votes_frame([(" p1", "A ", "B", " A"), ("p2", "B", "A", "tie")])
    frame["rater"] = [None, "r2"]
    votes = votes_prepare(frame)
    assert votes.models == ["A", "B"] and votes.prompts == ["p1", "p2"]
    assert list(votes.frame["rater"]) == ["", "r2"]


def test_empty_table_and_everything_excluded():
    with pytest.raises(VoteTableError, match="has no votes"):
        votes_prepare(votes_frame([]))
    frame = votes_frame([("p1", "A", "B", "A")])
    frame["attention_failed"] = ["yes"]
    with pytest.raises(VoteTableError, match="All 1 votes were excluded"):
        votes_prepare(frame, exclude_flagged=True)


def test_bad_settings_are_refused():
    frame = votes_frame([("p1", "A", "B", "A")])
    with pytest.raises(VoteTableError, match="baseline 'C' is not one of the models"):
        analyze(frame, baseline="C")
    with pytest.raises(VoteTableError, match="Unknown CI method"):
        analyze(frame, ci="normal")
    with pytest.raises(VoteTableError, match="both_bad must be one of"):
        analyze(frame, both_bad="loss")


def test_the_package_imports_without_django():
    root = Path(__file__).resolve().parents[3]
    code = "import comparisons.stats, sys; assert 'django' not in sys.modules, 'django was imported'"
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
