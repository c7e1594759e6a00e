"""The one-call lease (PostgreSQL, connections kept): the rater's next pair in one round trip, through a
temporary PL/pgSQL function made of the long way's statements; every decision it does not take plainly is left
to the long way, with nothing written."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from comparisons import rating_queries, services
from comparisons.models import Assignment, Comparison, new_token
from comparisons.services import rating
from tests.comparisons.factories import build_campaign, invite_rater, rows_locked_elsewhere

# The real check, taken before tests/conftest.py's autouse fixture replaces it for every test.
CONNECTIONS_KEPT = rating_queries._connections_kept

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="a PL/pgSQL function")
pytestmark = pytest.mark.django_db


def one_call(campaign, rater, *, windows=(16,), start=0.5):
    now = timezone.now()
    return rating_queries.next_lease_in_one_call(
        rating_queries.LeaseRequest(
            rater_id=rater.pk, campaign_id=campaign.pk, limit=campaign.comparisons_per_rater,
            k=campaign.votes_per_comparison, now=now, leased_until=now + timedelta(seconds=campaign.lease_seconds),
            start=start, windows=windows, to_lock=16, token=new_token(), coin=True,
        )
    )  # fmt: skip


def long_way_forbidden(monkeypatch):
    def refuse(**kwargs):
        raise AssertionError("the long way was taken")

    monkeypatch.setattr(rating, "_assignment_next_attempt", refuse)


def test_it_is_on_only_for_postgresql_connections_kept_between_requests(monkeypatch):
    monkeypatch.setattr(rating_queries, "_connections_kept", CONNECTIONS_KEPT)
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    assert not rating_queries.one_call_lease_enabled()  # its function would be made again for every request
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)
    assert rating_queries.one_call_lease_enabled() == (connection.vendor == "postgresql")
    # Behind a transaction-mode pooler (DATABASE_PREPARED_STATEMENTS=0) the session is not the connection's.
    options = {**connection.settings_dict["OPTIONS"], "server_side_binding": False}
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", options)
    assert not rating_queries.one_call_lease_enabled()


@postgres_only
def test_a_pair_is_leased_in_one_call_as_the_long_way_shows_it_and_asked_again_it_is_the_same(monkeypatch):
    campaign = build_campaign(n_prompts=6, k=2)
    rater = invite_rater(campaign)
    long_way_forbidden(monkeypatch)
    assignment = services.assignment_next(rater=rater, campaign=campaign)
    stored = Assignment.objects.get(token=assignment.token)
    assert (stored.rater_id, stored.comparison_id, stored.left_is_a, stored.status) == (
        rater.pk, assignment.comparison_id, assignment.left_is_a, "leased",
    )  # fmt: skip
    assert stored.created_at == assignment.created_at and stored.leased_until == assignment.leased_until
    assert assignment.view_row == rating_queries.rater_view_row(stored.pk)
    again = services.assignment_next(rater=rater, campaign=campaign)
    assert (again.pk, again.token, again.view_row) == (stored.pk, stored.token, assignment.view_row)
    assert Assignment.objects.count() == 1


@postgres_only
def test_a_rater_at_the_cap_is_left_to_the_long_way_which_serves_nothing():
    campaign = build_campaign(n_prompts=6, k=2, comparisons_per_rater=1)
    rater = invite_rater(campaign)
    first = services.assignment_next(rater=rater, campaign=campaign)
    services.vote_cast(rater=rater, token=first.token, choice="A")
    assert one_call(campaign, rater) is None
    assert services.assignment_next(rater=rater, campaign=campaign) is None
    assert Assignment.objects.count() == 1


@postgres_only
def test_windows_are_widened_in_the_call_and_past_the_widest_the_long_way_decides(monkeypatch):
    campaign = build_campaign(n_prompts=12, k=3)
    ids = list(Comparison.objects.filter(campaign=campaign).order_by("pk").values_list("pk", flat=True))
    holders = [invite_rater(campaign) for _ in range(11)]
    held = {services.assignment_next(rater=r, campaign=campaign).comparison_id for r in holders}
    (free,) = set(ids) - held
    start = ((ids.index(free) + 1) % len(ids) + 0.5) / len(ids)  # the free pair is the last a window reaches
    rater = invite_rater(campaign)
    leases = Assignment.objects.count()
    assert one_call(campaign, rater, windows=[2, 8], start=start) is None  # no window conclusive: nothing written
    assert Assignment.objects.count() == leases
    lease = one_call(campaign, rater, windows=[2, 8, 32], start=start)
    assert lease is not None and lease.comparison_id == free
    assert Assignment.objects.get(token=lease.token).comparison_id == free


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_when_every_candidate_is_held_the_call_does_not_wait_and_the_long_way_does():
    campaign = build_campaign(n_prompts=3, k=1)
    rater = invite_rater(campaign)
    with rows_locked_elsewhere("SELECT id FROM comparisons_comparison FOR UPDATE"):
        assert one_call(campaign, rater) is None
        assert Assignment.objects.count() == 0
    assert services.assignment_next(rater=rater, campaign=campaign) is not None


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_session_that_lost_the_function_makes_it_again():
    campaign = build_campaign(n_prompts=3, k=1)
    first, second = invite_rater(campaign), invite_rater(campaign)
    assert services.assignment_next(rater=first, campaign=campaign) is not None
    with connection.cursor() as cursor:
        cursor.execute("DISCARD TEMP")  # what a server-side reset does to temporary objects
    assert one_call(campaign, second) is not None


@postgres_only
def test_a_role_that_may_not_make_temporary_functions_is_served_the_long_way(monkeypatch, caplog):
    # What PostgreSQL answers a role without the TEMPORARY privilege on the database.
    refusal = (
        "DO $$ BEGIN RAISE insufficient_privilege USING MESSAGE = "
        "'permission denied to create temporary tables in database'; END $$"
    )
    monkeypatch.setattr(rating_queries, "_next_lease_function_sql", lambda: refusal)
    monkeypatch.setattr(rating_queries, "_FUNCTION_REFUSED", False)
    campaign = build_campaign(n_prompts=4, k=1)
    first, second = invite_rater(campaign), invite_rater(campaign)
    assignment = services.assignment_next(rater=first, campaign=campaign)
    assert assignment is not None and Assignment.objects.get(token=assignment.token).rater_id == first.pk
    assert not rating_queries.one_call_lease_enabled()
    assert "Grant the role TEMPORARY" in caplog.text
    assert services.assignment_next(rater=second, campaign=campaign) is not None  # the transaction is still usable
    assert caplog.text.count("Grant the role TEMPORARY") == 1
