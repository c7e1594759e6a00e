"""The rater loop's database round trips, pinned: `next` and `vote` through the HTTP API as a browser calls them.

Every statement counts (session, user with rater, campaign, the transaction's BEGIN/COMMIT,
locks, reads, writes). A change that adds one makes this test fail, so a slower hot path is a
decision someone takes on purpose (and updates these numbers), not an accident.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from comparisons.models import Vote
from tests.comparisons.factories import build_campaign

pytestmark = pytest.mark.django_db

POSTGRES = connection.vendor == "postgresql"
# With Redis the session is read from the cache (evalsite.sessions), else from the database.
SESSION = 0 if settings.SESSION_ENGINE == "evalsite.sessions" else 1
# The transaction that hands out a pair: BEGIN, [rater lock], current lease, candidates, [lock of the first free
# one], lease INSERT, COMMIT; SQLite needs no locks: its transactions take the database's write lock at BEGIN.
# The pair the rater is shown comes with the INSERT on PostgreSQL; SQLite reads it after the INSERT (SQLite has no
# INSERT in a WITH clause).
LEASE_NEW = 7 if POSTGRES else 6
# The same pair asked for again (the page reloaded, or a vote repeated): no candidate, no INSERT; the pair comes
# with the current lease.
LEASE_SAME = 4 if POSTGRES else 3
# next: [session], user+rater, campaign; the lease's transaction.
NEXT_NEW_LEASE = SESSION + 2 + LEASE_NEW
NEXT_SAME_LEASE = SESSION + 2 + LEASE_SAME
# vote: [session], user+rater; BEGIN, assignment+comparison+campaign (locked), the writes, COMMIT. PostgreSQL
# makes the vote INSERT and the two UPDATEs in one statement; SQLite in three. Then the next pair, which the
# answer carries: the lease's transaction (the campaign came with the assignment).
VOTE_NEW = SESSION + (5 if POSTGRES else 7) + LEASE_NEW
# The same vote again (a retried request): the stored vote instead of the writes, and the pair already leased.
VOTE_REPEAT = SESSION + 5 + LEASE_SAME


def statements(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries]


def test_next_and_vote_use_a_fixed_number_of_queries(rater_client):
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
    assert len(served) == NEXT_SAME_LEASE, statements(served)
    token = response.json()["assignment"]
    assert token == voted.json()["next"]["assignment"]
    assert response.json()["progress"] == {"done": 1, "total": 6}

    with CaptureQueriesContext(connection) as voted:
        response = client.vote(token, "B")
    assert response.status_code == 201
    assert len(voted) == VOTE_NEW, statements(voted)
    following = response.json()["next"]
    assert following["assignment"] != token and following["progress"] == {"done": 2, "total": 6}

    with CaptureQueriesContext(connection) as repeated:
        response = client.vote(token, "B")
    assert response.status_code == 200
    assert len(repeated) == VOTE_REPEAT, statements(repeated)
    assert response.json()["next"] == following
    assert Vote.objects.filter(assignment__token=token).count() == 1

    assert client.skip(following["assignment"]).status_code == 200
    with CaptureQueriesContext(connection) as served:
        response = client.next(campaign.slug)
    assert response.status_code == 200
    assert len(served) == NEXT_NEW_LEASE, statements(served)


def test_the_query_count_of_a_vote_with_its_next_pair_does_not_grow_with_the_campaign_or_the_raters_history(
    rater_client,
):
    campaign = build_campaign(n_prompts=30, k=2)
    client = rater_client(campaign)
    token = client.next(campaign.slug).json()["assignment"]
    counts = []
    for _ in range(12):
        with CaptureQueriesContext(connection) as voted:
            response = client.vote(token, "tie")
        assert response.status_code == 201
        counts.append(len(voted))
        token = response.json()["next"]["assignment"]
    assert counts == [VOTE_NEW] * 12
