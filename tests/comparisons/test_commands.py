"""create_campaign, invite and export_votes as an operator runs them."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import CommandError, call_command

from comparisons import services
from comparisons.models import Campaign, Comparison
from comparisons.selectors import VOTE_COLUMNS, vote_table
from tests.comparisons.factories import build_campaign, build_eval_set, invite_rater

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_campaign_opens_it_and_reports_skipped_prompts():
    eval_set, _, _ = build_eval_set(n_prompts=5, missing={(2, "zebra-model-7")})
    out = run(
        "create_campaign", "cli-study", "--evalset", eval_set.name, "--models", "zebra-model-7", "quokka-llm-13b",
        "--votes-per-pair", "2", "--limit", "4", "--title", "CLI study", "--attention-rate", "0.25",
    )  # fmt: skip
    assert "skipped prompt user_oriented_task_2: no response from zebra-model-7" in out
    assert "3 comparisons x 2 votes" in out
    campaign = Campaign.objects.get(slug="cli-study")
    assert campaign.status == Campaign.Status.OPEN and campaign.title == "CLI study"
    assert campaign.votes_per_comparison == 2
    assert Comparison.objects.filter(campaign=campaign, is_attention_check=False).count() == 3
    assert Comparison.objects.filter(campaign=campaign, is_attention_check=True).count() == 1


def test_create_campaign_with_a_baseline():
    eval_set, _, _ = build_eval_set(n_prompts=2, model_names=["a-one", "b-two", "c-three"])
    run("create_campaign", "vs-base", "--evalset", eval_set.name, "--models", "a-one", "b-two", "--baseline", "c-three")
    campaign = Campaign.objects.get(slug="vs-base")
    assert campaign.baseline.name == "c-three"
    assert campaign.comparisons.count() == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--evalset", "nope", "--models", "zebra-model-7", "quokka-llm-13b"], "No eval set named 'nope'"),
        (["--evalset", "{es}", "--models", "zebra-model-7", "ghost"], "Unknown model(s): ghost"),
        (["--evalset", "{es}", "--models", "zebra-model-7"], "at least two different models"),
        (
            ["--evalset", "{es}", "--models", "zebra-model-7", "quokka-llm-13b", "--votes-per-pair", "0"],
            "--votes-per-pair: must be a whole number from 1",
        ),
    ],
)
def test_create_campaign_bad_input_is_a_clear_error_and_creates_nothing(args, message):
    eval_set, _, _ = build_eval_set(n_prompts=2)
    args = [a.replace("{es}", eval_set.name) for a in args]
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call_command("create_campaign", "bad", *args, stdout=io.StringIO())
    assert not Campaign.objects.filter(slug="bad").exists()


def test_create_campaign_refuses_an_existing_slug():
    campaign = build_campaign(slug="taken")
    with pytest.raises(CommandError, match="already exists"):
        call_command(
            "create_campaign", "taken", "--evalset", campaign.eval_set.name,
            "--models", "zebra-model-7", "quokka-llm-13b", stdout=io.StringIO(),
        )  # fmt: skip


def test_invite_prints_the_link_last(settings):
    campaign = build_campaign(slug="inv")
    settings.SITE_URL = "https://eval.example.org/"
    lines = run("invite", "inv").strip().splitlines()
    assert lines[-1] == f"https://eval.example.org/join/{campaign.invite_token}"
    with pytest.raises(CommandError, match="No campaign"):
        run("invite", "missing")


def test_export_votes_columns_rows_and_vote_table(tmp_path):
    campaign = build_campaign(n_prompts=3, k=2, attention_check_rate=1.0)
    rater = invite_rater(campaign)
    # First an attention check (rate 1.0): failed on purpose, so the rater is flagged.
    gold = services.assignment_next(rater=rater, campaign=campaign)
    assert gold.comparison.is_attention_check
    services.vote_cast(rater=rater, token=gold.token, choice="B" if gold.left_is_a else "A")
    campaign.attention_check_rate = 0
    campaign.save()
    expected = []
    for choice in ["A", "B", "tie"]:
        a = services.assignment_next(rater=rater, campaign=campaign)
        services.vote_cast(rater=rater, token=a.token, choice=choice)
        c = a.comparison
        left, right = (c.response_a, c.response_b) if a.left_is_a else (c.response_b, c.response_a)
        expected.append({"A": left.model.name, "B": right.model.name, "tie": "tie"}[choice])

    out = tmp_path / "votes.csv"
    assert "Wrote 3 votes" in run("export_votes", campaign.slug, str(out))
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == VOTE_COLUMNS
    assert [r["winner"] for r in rows] == expected  # the gold vote is not exported
    assert all(r["attention_failed"] == "true" for r in rows)
    assert all(r["campaign"] == campaign.slug and r["rater"] == rater.user.username for r in rows)

    table = vote_table(campaign=campaign)
    assert list(table.columns) == VOTE_COLUMNS
    assert list(table["winner"]) == expected
    assert table["attention_failed"].dtype == bool
    assert (table["length_a"] > 0).all() and (table["length_b"] > 0).all()


def test_export_votes_errors(tmp_path):
    with pytest.raises(CommandError, match="No campaign"):
        run("export_votes", "missing", str(tmp_path / "x.csv"))
    build_campaign(slug="exp")
    with pytest.raises(CommandError, match="does not exist"):
        run("export_votes", "exp", str(tmp_path / "no-such-dir" / "x.csv"))
    run("export_votes", "exp", str(tmp_path / "empty.csv"))
    assert (tmp_path / "empty.csv").read_text().strip() == ",".join(VOTE_COLUMNS)
