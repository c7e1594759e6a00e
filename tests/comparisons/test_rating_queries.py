"""The rater path's hand-written SQL lives in `comparisons/rating_queries.py` only, and what it returns
matches what the ORM reads back."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.apps import apps
from django.db import connection, transaction
from django.forms.models import model_to_dict

from comparisons import rating_queries, services
from comparisons.models import Assignment, Campaign, Comparison, Vote
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


postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's settings and plan cache")


def _lease_settings() -> tuple[str, str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('synchronous_commit'), current_setting('plan_cache_mode'), "
            "current_setting('enable_seqscan')"
        )
        return cursor.fetchone()


@postgres_only
@pytest.mark.django_db(transaction=True)  # real commits: the settings must end with the lease's transaction
def test_only_the_lease_transaction_commits_asynchronously_and_votes_still_wait_for_the_disk():
    campaign = build_campaign(n_prompts=2, k=1)
    rater = invite_rater(campaign)
    defaults = _lease_settings()
    assert defaults == ("on", "auto", "on")
    with transaction.atomic():
        rating_queries.lock_rater(rater.pk, leasing=True)
        assert _lease_settings() == ("off", "force_generic_plan", "off")
    assert _lease_settings() == defaults
    # The service leaves the connection as it found it, so the vote cast next on it waits for the disk.
    assignment = services.assignment_next(rater=rater, campaign=campaign)
    assert _lease_settings() == defaults
    with transaction.atomic():
        rating_queries.vote_target(token=assignment.token, rater_id=rater.pk)
        assert _lease_settings() == defaults


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_next_pair_statements_are_planned_once_per_connection(monkeypatch):
    """PostgreSQL planned the rater's current-lease read afresh on every request: its generic plan is costed
    above the custom ones. Every statement of the lease transaction now runs on its prepared plan. (The long
    way, whose statements psycopg prepares; the one-call lease's function runs the same statements under the
    same settings, planned once per connection by PL/pgSQL.)"""
    monkeypatch.setattr(rating_queries, "_connections_kept", lambda: False)
    campaign = build_campaign(n_prompts=30, k=1)
    raters = [invite_rater(campaign) for _ in range(12)]
    for rater in raters:  # more than psycopg's prepare threshold (5): the statements get prepared
        assignment = services.assignment_next(rater=rater, campaign=campaign)
        services.assignment_next(rater=rater, campaign=campaign)  # the current lease, read again
        services.vote_cast(rater=rater, token=assignment.token, choice="A")
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
        prepared = cursor.fetchall()
    # As the server holds it: psycopg sends each named parameter as $1, $2, …
    pattern = re.sub(r"%\\\(\w+\\\)s", r"\\$\\d+", re.escape(rating_queries._SQL_CURRENT_LEASE))
    lease_reads = [p for p in prepared if re.fullmatch(pattern, p[0])]
    assert len(lease_reads) == 1, [p[0][:60] for p in prepared]
    assert lease_reads[0][1] >= 10 and lease_reads[0][2] == 0


def _indexes(model: type) -> dict[str, tuple[tuple[str, ...], bool]]:
    """The indexes of a model's table as the database has them: name → (columns, unique)."""
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return {
        name: (tuple(spec["columns"]), bool(spec["unique"]))
        for name, spec in found.items()
        if (spec["index"] or spec["unique"]) and spec["columns"]
    }


@pytest.mark.django_db
def test_no_index_of_assignments_or_votes_is_the_leading_part_of_another():
    """Every lease and vote updates each index of these tables: one that another index already begins with
    costs a write and serves no query (partial indexes, which cover only some rows, aside)."""
    for model in (Assignment, Vote):
        partial = {index.name for index in model._meta.indexes if index.condition is not None}
        found = _indexes(model)
        indexes = {name: columns for name, (columns, _) in found.items() if name not in partial}
        redundant = [
            (name, other)
            for name, columns in indexes.items()
            for other, longer in indexes.items()
            if other != name and longer[: len(columns)] == columns and not found[name][1]
        ]
        assert redundant == [], model.__name__
        assert {Assignment: "assignment_unique_token", Vote: "vote_rater_last"}[model] in indexes


def _sequential_scans(*models: type) -> int:
    """Sequential scans PostgreSQL started on these models' tables, this backend's included (flushed first)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")  # flushed when this statement's transaction ends
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT COALESCE(SUM(seq_scan), 0) FROM pg_stat_user_tables WHERE relname = ANY(%s)",
            [[model._meta.db_table for model in models]],
        )
        return int(cursor.fetchone()[0])


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_next_pair_statements_keep_to_indexes_though_planned_while_the_tables_were_small():
    """A connection keeps its plans for its life. Planned while a new study's tables held a few rows, the pick
    read the whole table of assignments once per candidate (a sequential scan is cheapest on one page), and went
    on doing so as the study grew: 20-110 ms per pick, against 1 ms, at a few thousand assignments."""
    campaign = build_campaign(n_prompts=40, k=1)
    raters = [invite_rater(campaign) for _ in range(16)]
    tables = (Assignment, Comparison, Vote)
    with connection.cursor() as cursor:  # what autovacuum does to a new study's tables: statistics of a few rows
        cursor.execute(f"ANALYZE {', '.join(model._meta.db_table for model in tables)}")
    for rater in raters[:8]:  # more than psycopg's prepare threshold: the statements are prepared and planned
        assignment = services.assignment_next(rater=rater, campaign=campaign)
        services.vote_cast(rater=rater, token=assignment.token, choice="A")
    before = _sequential_scans(*tables)
    for rater in raters[8:]:
        assert services.assignment_next(rater=rater, campaign=campaign) is not None
    assert _sequential_scans(*tables) == before


@pytest.mark.django_db
def test_only_the_live_lease_index_begins_with_the_comparison():
    """A comparison's live leases are counted for every candidate of every pick, from the (comparison, status,
    leased_until) index alone. Another index of assignments beginning with the comparison (the unique
    (comparison, rater) one did) lets a plan made on a new study's small tables count them through that index
    instead, reading each of the comparison's assignments from the table: 2.5 times the pick's reads under load."""
    comparison = Assignment._meta.get_field("comparison").column
    leading = sorted(columns for columns, _ in _indexes(Assignment).values() if columns[:1] == (comparison,))
    assert leading == [(comparison, "status", "leased_until")]
