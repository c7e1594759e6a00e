"""A vote's request reads its session, user and rater and the assignment it votes on in one statement
(PostgreSQL): the view is marked with `sessions.reads_vote_target`, `VoteTargetWithSessionMiddleware` asks the
session read for it, and the vote's first read without locks takes it. What was read serves that vote only."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from comparisons import rating_queries
from comparisons.models import Assignment, Vote
from comparisons.services.campaigns import campaign_stop_check_soon
from tests.comparisons.factories import build_campaign

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has no LATERAL join: two statements there"),
    pytest.mark.django_db(transaction=True),
]


def leased(client, campaign) -> str:
    return client.next(campaign.slug).json()["assignment"]


def statements(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries]


@pytest.mark.parametrize("vote_limit", ["0/1", "1000/60"], ids=["no-rate-limit", "rate-limited-by-user"])
def test_the_vote_is_read_with_the_session_even_when_the_rate_limit_reads_the_user_first(rater_client, vote_limit):
    campaign = build_campaign(n_prompts=6, k=2)
    client = rater_client(campaign)
    token = leased(client, campaign)
    client.csrf()
    # Whether the campaign has a stopping rule is looked up once per process and delay after a vote: done now.
    campaign_stop_check_soon(campaign_id=campaign.pk)
    limits = {"comparisons:api_vote": vote_limit}
    with override_settings(RATE_LIMITS=limits), CaptureQueriesContext(connection) as captured:
        response = client.vote(token, "A")
    assert response.status_code == 201, response.content
    sql = statements(captured)
    # The session statement carries the assignment; the next statement writes the vote: no read in between.
    assert len(sql) == 2, sql
    assert "django_session" not in sql[0] and "LATERAL" in sql[0] and "comparisons_assignment" in sql[0]
    assert "blindeval_vote_then_lease" in sql[1]
    assert Vote.objects.get(assignment__token=token).choice == "left"
    assert rating_queries._vote_target_read.get() is None and rating_queries._vote_token_wanted.get() is None


def test_another_raters_token_read_with_the_session_is_still_not_found(rater_client):
    campaign = build_campaign(n_prompts=6, k=2)
    owner, intruder = rater_client(campaign), rater_client(campaign)
    token = leased(owner, campaign)
    response = intruder.vote(token, "A")
    assert response.status_code == 404
    assert not Vote.objects.exists() and Assignment.objects.get(token=token).status == "leased"
    assert owner.vote(token, "B").status_code == 201


def test_a_read_serves_one_unlocked_read_of_its_own_token_and_rater_only(rater_client):
    campaign = build_campaign(n_prompts=6, k=2)
    client = rater_client(campaign)
    token = leased(client, campaign)
    rater = client.rater
    other_token = Assignment.objects.exclude(token=token).values_list("token", flat=True).first()
    assert other_token is None  # one lease so far: the read below is the only target there is

    def read_with_session():
        rating_queries.vote_target_with_session(token)
        found = rating_queries.session_with_user(client.session.session_key, timezone.now())
        assert found is not None and found.rater.pk == rater.pk

    read_with_session()
    with CaptureQueriesContext(connection) as captured:
        first = rating_queries.vote_target(token=token, rater_id=rater.pk, lock=False)
        again = rating_queries.vote_target(token=token, rater_id=rater.pk, lock=False)
    assert first == again and first.status == "leased" and len(captured) == 1  # the second read is a statement

    read_with_session()
    with CaptureQueriesContext(connection) as captured:
        assert rating_queries.vote_target(token=token, rater_id=rater.pk + 1, lock=False) is None
        assert rating_queries.vote_target(token=token, rater_id=rater.pk, lock=False) is not None
    assert len(captured) == 2  # another rater's read is not taken, and the read is gone with it

    read_with_session()
    with CaptureQueriesContext(connection) as captured:
        assert rating_queries.vote_target(token=token, rater_id=rater.pk, lock=True) is not None
    assert len(captured) == 1 and "FOR UPDATE" in statements(captured)[0]  # under locks, always read again
    rating_queries.vote_target_with_session(None)
