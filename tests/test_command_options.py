"""Every numeric option of every management command refuses a bad value with one clear line, never a traceback."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

ROOT = Path(__file__).resolve().parents[1]

# The positional arguments and required options each command needs to get as far as its options.
BASE = {
    "analyze": ["votes.csv"],
    "export_results": ["some-campaign", "summary", "-"],
    "create_campaign": ["some-slug", "--evalset", "some-set", "--models", "a", "b"],
    "add_model": ["some-model", "--checkpoint", "/nowhere"],
    "generate": ["some-model", "--evalset", "some-set"],
}
BAD_VALUES = {
    "analyze": {
        "--bootstrap": ["-1", "1e3", "many", "1000001"],
        "--seed": ["-1", "1.5", str(2**64)],
        "--confidence": ["0", "1", "1.5", "nan", "-inf", "95%"],
        "--min-seconds": ["nan", "-inf", "inf", "-1"],
    },
    "export_results": {"--bootstrap": ["-5", "x"], "--seed": ["-1", "nan"]},
    "create_campaign": {
        "--votes-per-pair": ["0", "-2", "2.5", str(2**40)],
        "--limit": ["-3", "0", "ten"],
        "--attention-rate": ["-0.1", "1.5", "nan", "inf"],
        "--per-rater": ["0", "-1"],
        "--lease-seconds": ["0", "-600", "1e9"],
    },
    "add_model": {
        "--max-new-tokens": ["0", "-1", "nan"],
        "--temperature": ["-0.5", "nan", "inf"],
        "--top-p": ["0", "1.01", "nan", "-1"],
        "--seed": ["-1", "nan"],
    },
    "generate": {
        "--limit": ["ten", "1.5"],
        "--chunk-size": ["x"],
        "--batch-size": ["8x"],
        "--worker-timeout": ["0", "-1", "nan", "inf"],
        "--poll": ["0", "nan"],
    },
}
CASES = [
    (command, option, value)
    for command, options in BAD_VALUES.items()
    for option, values in options.items()
    for value in values
]


@pytest.mark.parametrize(("command", "option", "value"), CASES, ids=[" ".join(case) for case in CASES])
def test_bad_numeric_option_stops_the_command_with_a_clear_message(command, option, value):
    with pytest.raises(CommandError) as caught:
        call_command(command, *BASE[command], f"{option}={value}", stdout=io.StringIO(), stderr=io.StringIO())
    message = str(caught.value)
    assert f"argument {option}: must be a " in message
    assert repr(value) in message
    assert "\n" not in message


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--limit", "0", "The prompt limit (only the first N prompts) must be a whole number from 1 to 2,147,483,647"),
        ("--limit", "-3", "The prompt limit (only the first N prompts) must be a whole number from 1"),
        ("--chunk-size", "0", "The chunk size (prompts per worker task) must be a whole number from 1"),
        ("--batch-size", "-8", "The batch size (prompts per forward batch) must be a whole number from 1"),
        ("--chunk-size", str(2**40), "The chunk size (prompts per worker task) must be a whole number from 1"),
    ],
)
def test_generate_leaves_the_range_of_run_options_to_run_start_and_says_it_in_one_line(option, value, message):
    from generation.models import EvalSet, ModelEntry

    ModelEntry.objects.create(name="some-model", kind=ModelEntry.Kind.CHECKPOINT, status=ModelEntry.Status.READY)
    EvalSet.objects.create(name="some-set")
    with pytest.raises(CommandError) as caught:
        call_command("generate", *BASE["generate"], f"{option}={value}", stdout=io.StringIO(), stderr=io.StringIO())
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "args",
    [
        ["analyze", "votes.csv", "--json", "--min-seconds", "nan"],
        ["analyze", "votes.csv", "--json", "--min-seconds=-inf"],
        ["analyze", "votes.csv", "--seed=-1"],
        ["create_campaign", "slug", "--evalset", "e", "--models", "a", "b", "--limit=-3"],
        ["generate", "m", "--evalset", "e", "--worker-timeout", "nan"],
    ],
    ids=lambda args: " ".join(args),
)
def test_on_the_command_line_a_bad_value_exits_non_zero_without_a_traceback(args, tmp_path):
    env = {**os.environ, "BLINDEVAL_VAR_DIR": str(tmp_path / "var")}
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True, env=env)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "error: argument --" in done.stderr and "must be a " in done.stderr
    assert done.stdout == ""
