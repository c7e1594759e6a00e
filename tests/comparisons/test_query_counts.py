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
# next: [session], user+rater, campaign; BEGIN, [rater lock], current lease, candidates, [lock of the first
# free one], lease INSERT, COMMIT; the pair with its progress. SQLite needs no locks: its transactions take
# the database's write lock at BEGIN.
NEXT_NEW_LEASE = SESSION + (10 if POSTGRES else 8)
# The same pair asked for again (the page reloaded): no candidate, no INSERT.
NEXT_SAME_LEASE = SESSION + (7 if POSTGRES else 6)
# vote: [session], user+rater; BEGIN, assignment+comparison (locked), the writes, COMMIT. PostgreSQL makes the
# vote INSERT and the two UPDATEs in one statement; SQLite in three.
VOTE_NEW = SESSION + (5 if POSTGRES else 7)
# The same vote again (a retried request): the stored vote instead of the writes.
VOTE_REPEAT = SESSION + 5


def statements(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries]


def test_next_and_vote_use_a_fixed_number_of_queries(rater_client):
    campaign = build_campaign(n_prompts=6, k=3)
    client = rater_client(campaign)
    # Warm up: one full loop (and the CSRF cookie) outside the counted requests.
    warm = client.next(campaign.slug).json()["assignment"]
    assert client.vote(warm, "A").status_code == 201
    client.csrf()

    with CaptureQueriesContext(connection) as served:
        response = client.next(campaign.slug)
    assert response.status_code == 200
    assert len(served) == NEXT_NEW_LEASE, statements(served)
    token = response.json()["assignment"]
    assert response.json()["progress"] == {"done": 1, "total": 6}

    with CaptureQueriesContext(connection) as again:
        assert client.next(campaign.slug).json()["assignment"] == token
    assert len(again) == NEXT_SAME_LEASE, statements(again)

    with CaptureQueriesContext(connection) as voted:
        assert client.vote(token, "B").status_code == 201
    assert len(voted) == VOTE_NEW, statements(voted)

    with CaptureQueriesContext(connection) as repeated:
        assert client.vote(token, "B").status_code == 200
    assert len(repeated) == VOTE_REPEAT, statements(repeated)
    assert Vote.objects.filter(assignment__token=token).count() == 1


def test_the_query_count_of_next_does_not_grow_with_the_campaign_or_the_raters_history(rater_client):
    campaign = build_campaign(n_prompts=30, k=2)
    client = rater_client(campaign)
    counts = []
    for _ in range(12):
        with CaptureQueriesContext(connection) as served:
            response = client.next(campaign.slug)
        counts.append(len(served))
        assert client.vote(response.json()["assignment"], "tie").status_code == 201
    assert counts == [NEXT_NEW_LEASE] * 12
