"""``manage.py analyze`` on good and malformed vote files, including one built from the real Self-Instruct set."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from .helpers import pair_votes, votes_frame

ROOT = Path(__file__).resolve().parents[3]
TASKS = ROOT / "fixtures" / "self_instruct" / "user_oriented_instructions.jsonl"
PAIR_KEYS = {"model", "baseline", "n", "wins", "losses", "ties", "win_rate", "ci_low", "ci_high", "se", "p_value"}
PAIR_KEYS |= {"ci_method", "lc_win_rate", "lc_ci_low", "lc_ci_high"}


def run_json(*args: str) -> dict:
    out = io.StringIO()
    call_command("analyze", *args, "--json", stdout=out)
    text = out.getvalue()
    assert text.count("\n") <= 1  # one JSON object
    return json.loads(text)


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_json_output_has_the_contract_keys(tmp_path):
    frame = votes_frame(pair_votes("alpaca", "davinci", 6, 3, 1) + pair_votes("llama", "davinci", 2, 7, 1, start=20))
    votes = write_csv(tmp_path / "votes.csv", frame)
    result = run_json(str(votes), "--baseline", "davinci", "--bootstrap", "300", "--seed", "4")
    assert {"pairs", "ranking", "ranking_components", "agreement", "position_bias"} <= set(result)
    assert [(p["model"], p["baseline"]) for p in result["pairs"]] == [("alpaca", "davinci"), ("llama", "davinci")]
    for pair in result["pairs"]:
        assert set(pair) >= PAIR_KEYS
    assert result["pairs"][0]["win_rate"] == pytest.approx(65.0)
    assert {"rank", "model", "score", "ci_low", "ci_high", "component"} <= set(result["ranking"][0])
    assert result["ranking_components"] == [["alpaca", "davinci", "llama"]]
    assert result["settings"]["bootstrap"] == 300 and result["settings"]["seed"] == 4
    # Without a baseline: one entry per pair of models that met (alpaca and llama never did).
    everything = run_json(str(votes), "--bootstrap", "0")
    assert len(everything["pairs"]) == 2
    assert everything["pairs"][0]["ci_low"] is None


def test_same_seed_same_numbers_and_text_output(tmp_path):
    votes = write_csv(tmp_path / "votes.csv", votes_frame(pair_votes("A", "B", 30, 25, 5)))
    assert run_json(str(votes), "--seed", "9") == run_json(str(votes), "--seed", "9")
    out = io.StringIO()
    call_command("analyze", str(votes), "--baseline", "B", "--ci", "percentile", stdout=out)
    text = out.getvalue()
    assert "Model A wins 54.2% of comparisons against B (95% CI " in text
    assert "30 wins, 5 ties, 25 losses)" in text
    assert "Ranking" in text


def test_options_change_the_analysis(tmp_path):
    frame = votes_frame(pair_votes("A", "B", 6, 4, 0) + [("p99", "A", "B", "both_bad")])
    frame["attention_failed"] = ["true", "true"] + ["false"] * 9
    votes = write_csv(tmp_path / "votes.csv", frame)
    plain = run_json(str(votes), "--bootstrap", "0")["pairs"][0]
    assert (plain["n"], plain["ties"]) == (11, 1)
    dropped = run_json(str(votes), "--bootstrap", "0", "--exclude-flagged", "--both-bad-as", "exclude")["pairs"][0]
    assert (dropped["n"], dropped["wins"], dropped["ties"]) == (8, 4, 0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"prompt_id,model_a,model_b,winner\n", "has no votes"),
        (b"prompt_id,model_a,winner\np1,A,A\n", "no column 'model_b'"),
        (b"prompt_id,model_a,model_b,winner\np1,A,B,A\np2,A,B,Z\n", "line 3: winner must be model_a, model_b"),
        (b"prompt_id,model_a,model_b,winner\np1,A,B,A,extra,more\n", "not valid CSV"),
        ("prompt_id,model_a,model_b,winner\np1,Ä,B,tie\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_malformed_files_give_one_clear_message(tmp_path, content, message):
    votes = tmp_path / "votes.csv"
    votes.write_bytes(content)
    with pytest.raises(CommandError, match=message):
        call_command("analyze", str(votes), stdout=io.StringIO())


def test_missing_file_and_unknown_baseline(tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        call_command("analyze", str(tmp_path / "nope.csv"), stdout=io.StringIO())
    votes = write_csv(tmp_path / "votes.csv", votes_frame(pair_votes("A", "B", 1, 1, 0)))
    with pytest.raises(CommandError, match="baseline 'C' is not one of the models"):
        call_command("analyze", str(votes), "--baseline", "C", stdout=io.StringIO())


def test_command_line_error_has_no_traceback(tmp_path):
    votes = tmp_path / "votes.csv"
    votes.write_text("prompt_id,model_a,model_b,winner\np1,A,B,nobody\n", encoding="utf-8")
    env = {**os.environ, "BLINDEVAL_VAR_DIR": str(tmp_path / "var")}
    done = subprocess.run(
        [sys.executable, "manage.py", "analyze", str(votes)], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert done.returncode != 0
    assert "line 2" in done.stderr and "Traceback" not in done.stderr


def test_reproduces_the_published_alpaca_result_on_the_real_prompts(tmp_path):
    # The Alpaca study: on the 252 Self-Instruct user-oriented tasks, Alpaca 7B won 90 comparisons,
    # text-davinci-003 won 89, and 73 were ties. Ties count half: (90 + 73 / 2) / 252 = 50.198%.
    tasks = pd.read_json(TASKS, lines=True)
    assert len(tasks) == 252
    rng = np.random.default_rng(0)
    verdicts = np.array(["alpaca-7b"] * 90 + ["text-davinci-003"] * 89 + ["tie"] * 73)
    rng.shuffle(verdicts)
    swap = rng.random(252) < 0.5
    frame = pd.DataFrame(
        {
            "campaign": "alpaca-study",
            "prompt_id": tasks["id"],
            "category": tasks["motivation_app"],
            "model_a": np.where(swap, "text-davinci-003", "alpaca-7b"),
            "model_b": np.where(swap, "alpaca-7b", "text-davinci-003"),
            "left_model": np.where(rng.random(252) < 0.5, "alpaca-7b", "text-davinci-003"),
            "winner": verdicts,
            "rater": [f"rater{i % 5}" for i in range(252)],
            "attention_failed": "false",
            "submitted_at": "2023-03-13T00:00:00+00:00",
            "seconds": 42.0,
        }
    )
    votes = write_csv(tmp_path / "alpaca.csv", frame)
    result = run_json(str(votes), "--baseline", "text-davinci-003", "--bootstrap", "2000", "--seed", "1")
    (pair,) = result["pairs"]
    assert (pair["model"], pair["wins"], pair["losses"], pair["ties"], pair["n"]) == ("alpaca-7b", 90, 89, 73, 252)
    assert pair["win_rate"] == pytest.approx(100 * 126.5 / 252)
    assert round(pair["win_rate"], 2) == 50.20
    assert pair["win_rate_no_ties"] == pytest.approx(100 * 90 / 179)
    assert pair["p_value"] == pytest.approx(1.0)
    # Expected width: 1.96 standard errors each side, se = sd(scores) / sqrt(252) = 2.65 points.
    scores = np.array([1.0] * 90 + [0.0] * 89 + [0.5] * 73)
    half_width = 1.96 * 100 * scores.std(ddof=1) / np.sqrt(252)
    assert pair["ci_high"] - pair["ci_low"] == pytest.approx(2 * half_width, rel=0.12)
    assert pair["ci_low"] < 50.0 < pair["ci_high"]
    assert len({c["category"] for c in result["categories"]}) == tasks["motivation_app"].nunique()
    assert result["position_bias"]["decisive"] == 179
