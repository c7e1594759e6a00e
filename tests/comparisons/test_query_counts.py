"""The rater loop's database round trips, pinned: `next` and `vote` through the HTTP API as a browser calls them.

Every statement counts (the session with its user and rater, campaign, the transaction's BEGIN/COMMIT,
locks, reads, writes). A change that adds one makes this test fail, so a slower hot path is a
decision someone takes on purpose (and updates these numbers), not an accident.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from comparisons import rating_queries
from comparisons.models import Vote
from tests.comparisons.factories import build_campaign

# Transactional: the rater loop runs outside a transaction, as in a deployment (inside one, the one-call lease
# makes its function again for every pair, since a rollback would take it away).
pytestmark = pytest.mark.django_db(transaction=True)

POSTGRES = connection.vendor == "postgresql"
# The transaction that hands out a pair, the long way: BEGIN, [rater lock], current lease, candidates, [lock of
# the first free one], lease INSERT, COMMIT; SQLite needs no locks: its transactions take the database's write lock
# at BEGIN. The pair the rater is shown comes with the INSERT on PostgreSQL; SQLite reads it after the INSERT
# (SQLite has no INSERT in a WITH clause).
LONG_LEASE_NEW = 7 if POSTGRES else 6
# The same pair asked for again (the page reloaded, or a vote repeated): no candidate, no INSERT; the pair comes
# with the current lease.
LONG_LEASE_SAME = 4 if POSTGRES else 3
# PostgreSQL with connections kept (as deployed): either one in one statement, the call of the function the
# connection's first pair made (rating_queries.next_lease_in_one_call).
ONE_CALL = 1


def lease_statements(*, new: bool, kept: bool) -> int:
    if POSTGRES and kept:
        return ONE_CALL
    return LONG_LEASE_NEW if new else LONG_LEASE_SAME


# next: the session with its user and rater (comparisons.sessions), the campaign; the lease.
def next_statements(*, new: bool, kept: bool = True) -> int:
    return 2 + lease_statements(new=new, kept=kept)


# vote on PostgreSQL: the session with its user and rater and, read in the same statement, the assignment with its
# comparison and campaign (no locks); then the vote INSERT and the two UPDATEs in one statement that takes the
# locks itself (no BEGIN, no COMMIT: the decision needed no lock). SQLite: the session, BEGIN, the assignment, the
# three writes, COMMIT. Then the next pair, which the answer carries: the lease (the campaign came with the
# assignment); with connections kept, leased in the vote's own statement (rating_queries.write_vote_then_lease).
# The same vote again (a retried request): the stored vote instead of the writes, and the pair already leased.
def vote_statements(*, repeat: bool = False, kept: bool = True) -> int:
    if POSTGRES and kept and not repeat:
        return 2
    if POSTGRES:
        return 2 + lease_statements(new=not repeat, kept=kept)
    if repeat:
        return 5 + lease_statements(new=False, kept=kept)
    return 7 + lease_statements(new=True, kept=kept)


def statements(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries]


@pytest.mark.parametrize("kept", [True, False], ids=["connections-kept", "connections-closed"])
def test_next_and_vote_use_a_fixed_number_of_queries(rater_client, monkeypatch, kept):
    monkeypatch.setattr(rating_queries, "_connections_kept", lambda: kept)
    campaign = build_campaign(n_prompts=6, k=3)
    client = rater_client(campaign)
    # Warm up: one full loop (and the CSRF cookie) outside the counted requests.
    warm = client.next(campaign.slug).json()["assignment"]
    voted = client.vote(warm, "A")
    assert voted.status_code == 201
    client.csrf()

    with CaptureQueriesContext(connection) as served:
        response = client.next(campaign.slug)
    assert response.status_code == 200
    assert len(served) == next_statements(new=False, kept=kept), statements(served)
    token = response.json()["assignment"]
    assert token == voted.json()["next"]["assignment"]
    assert response.json()["progress"] == {"done": 1, "total": 6}

    with CaptureQueriesContext(connection) as voted:
        response = client.vote(token, "B")
    assert response.status_code == 201
    assert len(voted) == vote_statements(kept=kept), statements(voted)
    following = response.json()["next"]
    assert following["assignment"] != token and following["progress"] == {"done": 2, "total": 6}

    with CaptureQueriesContext(connection) as repeated:
        response = client.vote(token, "B")
    assert response.status_code == 200
    assert len(repeated) == vote_statements(repeat=True, kept=kept), statements(repeated)
    assert response.json()["next"] == following
    assert Vote.objects.filter(assignment__token=token).count() == 1

    assert client.skip(following["assignment"]).status_code == 200
    with CaptureQueriesContext(connection) as served:
        response = client.next(campaign.slug)
    assert response.status_code == 200
    assert len(served) == next_statements(new=True, kept=kept), statements(served)


def test_the_query_count_of_a_vote_with_its_next_pair_does_not_grow_with_the_campaign_or_the_raters_history(
    rater_client,
):
    campaign = build_campaign(n_prompts=30, k=2)
    client = rater_client(campaign)
    first = client.next(campaign.slug).json()["assignment"]
    # Warm up: the first vote looks up whether the campaign has a stopping rule (once per process and delay).
    token = client.vote(first, "tie").json()["next"]["assignment"]
    counts = []
    for _ in range(12):
        with CaptureQueriesContext(connection) as voted:
            response = client.vote(token, "tie")
        assert response.status_code == 201
        counts.append(len(voted))
        token = response.json()["next"]["assignment"]
    assert counts == [vote_statements()] * 12
