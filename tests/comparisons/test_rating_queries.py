"""The rater path's hand-written SQL lives in `comparisons/rating_queries.py` only, and what it returns
matches what the ORM reads back."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.apps import apps
from django.forms.models import model_to_dict

from comparisons import rating_queries, services
from comparisons.models import Campaign, Comparison, Vote
from tests.comparisons.factories import build_campaign, invite_rater

COMPARISONS = Path(__file__).resolve().parents[2] / "comparisons"
# The modules allowed to hold hand-written SQL of the rater path's tables; add one only with the lead's
# approval (e.g. a module that loads votes with PostgreSQL's COPY for the analyses).
SQL_MODULES = {COMPARISONS / "rating_queries.py", COMPARISONS / "vote_copy.py"}  # the rater loop; COPY for analyses
RATER_PATH_MODELS = [
    ("comparisons", "Campaign"),
    ("comparisons", "Comparison"),
    ("comparisons", "Assignment"),
    ("comparisons", "Vote"),
    ("comparisons", "Rater"),
    ("auth", "User"),
    ("generation", "Prompt"),
    ("generation", "Response"),
]
STATEMENT = re.compile(r"\b(SELECT\b.*\bFROM|INSERT\s+INTO|UPDATE\b.*\bSET|DELETE\s+FROM)\b", re.DOTALL)


def rater_path_tables() -> list[str]:
    return [apps.get_model(app, name)._meta.db_table for app, name in RATER_PATH_MODELS]


def hand_written_sql(source: str, tables: list[str]) -> list[str]:
    """String constants of a module (f-string parts included) that read or write one of `tables` in SQL,
    and every `.cursor(` opened by hand."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if STATEMENT.search(text) and any(re.search(rf"\b{t}\b", text) for t in tables):
                found.append(f"line {node.lineno}: {text[:80]!r}")
        if isinstance(node, ast.Attribute) and node.attr == "cursor":
            found.append(f"line {node.lineno}: .cursor")
    return found


def test_the_detector_finds_sql_written_by_hand():
    tables = rater_path_tables()
    assert hand_written_sql('Q = "SELECT id FROM comparisons_vote WHERE id = %s"', tables)
    assert hand_written_sql('Q = f"UPDATE comparisons_comparison SET votes_count = {n}"', tables)
    assert hand_written_sql("with connection.cursor() as c:\n    pass", tables)
    assert not hand_written_sql('HELP = "Select the models to compare from the list."', tables)


def test_no_module_but_rating_queries_writes_sql_of_the_rater_path():
    tables = rater_path_tables()
    offenders = {}
    for path in sorted(COMPARISONS.rglob("*.py")):
        if path in SQL_MODULES or "migrations" in path.parts:
            continue
        found = hand_written_sql(path.read_text(encoding="utf-8"), tables)
        if found:
            offenders[str(path.relative_to(COMPARISONS.parent))] = found
    assert offenders == {}, "hand-written SQL belongs in comparisons/rating_queries.py"


def test_rating_queries_names_tables_and_statuses_only_through_the_models():
    source = (COMPARISONS / "rating_queries.py").read_text(encoding="utf-8")
    for table in rater_path_tables():
        assert table not in source, table
    for status in ("'leased'", "'voted'", "'skipped'"):
        assert status not in source, status


@pytest.mark.django_db
def test_the_vote_returned_by_a_cast_is_the_stored_row_field_by_field():
    campaign = build_campaign(n_prompts=2, k=1)
    rater = invite_rater(campaign)
    assignment = services.assignment_next(rater=rater, campaign=campaign)
    vote = services.vote_cast(
        rater=rater, token=assignment.token, choice="B", rationale="  clearer  ", reveals_identity=True
    ).vote
    stored = Vote.objects.get(pk=vote.pk)
    assert model_to_dict(vote) == model_to_dict(stored)
    assert (vote.submitted_at, vote.seconds) == (stored.submitted_at, stored.seconds)
    assert vote.rationale == "clearer" and vote.identity_reported is True
    assert rating_queries.votes_done(rater_id=rater.pk, campaign_id=campaign.pk) == 1


@pytest.mark.django_db
def test_a_campaign_read_by_slug_equals_the_orm_one():
    campaign = build_campaign(n_prompts=2, k=1)
    Campaign.objects.filter(pk=campaign.pk).update(identity_leaks=[{"prompt_id": 1, "models": ["a", "b"]}])
    read = rating_queries.campaign_by_slug(campaign.slug)
    assert model_to_dict(read) == model_to_dict(Campaign.objects.get(pk=campaign.pk))
    # The identity-leak report is left out of the rater path's read, and loaded when asked for.
    assert read.get_deferred_fields() == {"identity_leaks"}
    assert read.identity_leaks == [{"prompt_id": 1, "models": ["a", "b"]}]
    assert rating_queries.campaign_by_slug("no-such-campaign") is None


@pytest.mark.django_db
def test_a_campaign_counts_its_comparisons_once_when_it_opens_and_progress_counts_against_them(rater_client):
    campaign = build_campaign(n_prompts=4, attention_check_rate=0.5)
    created = Comparison.objects.filter(campaign=campaign).count()
    assert created > 4  # the real pairs and the attention checks
    assert Campaign.objects.get(pk=campaign.pk).comparisons_count == created
    services.campaign_pause(campaign=campaign)
    services.campaign_open(campaign=campaign)
    assert Campaign.objects.get(pk=campaign.pk).comparisons_count == created
    client = rater_client(campaign)
    assert client.next(campaign.slug).json()["progress"] == {"done": 0, "total": created}
