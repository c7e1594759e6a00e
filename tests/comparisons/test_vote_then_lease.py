"""A vote with the rater's next pair (`vote_cast(then_next=True)`, what the vote API answers with): on PostgreSQL
with connections kept, a vote written without locks and a plain next pick share one statement and one
transaction (`rating_queries.write_vote_then_lease`); every other case votes, then picks, as before."""

from __future__ import annotations

import random

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from scipy.stats import binomtest

from comparisons import rating_queries, services
from comparisons.models import Assignment, Vote
from comparisons.services import rating
from comparisons.services.campaigns import campaign_stop_check_soon
from tests.comparisons.factories import build_campaign, invite_rater

pytestmark = pytest.mark.django_db(transaction=True)
postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="a PL/pgSQL function")


def first_pair(campaign):
    rater = invite_rater(campaign)
    # Whether the campaign has a stopping rule is looked up once per process and delay after a vote: done now.
    campaign_stop_check_soon(campaign_id=campaign.pk)
    return rater, services.assignment_next(rater=rater, campaign=campaign)


@postgres_only
def test_the_vote_and_the_next_pair_are_one_read_and_one_statement():
    campaign = build_campaign(n_prompts=6, k=2)
    rater, assignment = first_pair(campaign)
    with CaptureQueriesContext(connection) as captured:
        result = services.vote_cast(rater=rater, token=assignment.token, choice="A", then_next=True)
    statements = [q["sql"] for q in captured.captured_queries]
    assert len(statements) == 2, statements
    assert "blindeval_vote_then_lease" in statements[1]
    vote = Vote.objects.get(assignment_id=assignment.pk)
    assert result.created and result.vote.pk == vote.pk and vote.choice == result.vote.choice
    assert Assignment.objects.get(pk=assignment.pk).status == "voted"
    following = result.next
    assert following is not None and following.comparison_id != assignment.comparison_id
    stored = Assignment.objects.get(token=following.token)
    assert (stored.rater_id, stored.status, stored.left_is_a) == (rater.pk, "leased", following.left_is_a)
    assert following.view_row == rating_queries.rater_view_row(stored.pk)
    # What the long way serves the rater now is that same pair: the lease is theirs.
    assert services.assignment_next(rater=rater, campaign=campaign).pk == stored.pk


@postgres_only
def test_the_vote_commits_waiting_for_the_disk_though_the_lease_alone_would_not():
    campaign = build_campaign(n_prompts=6, k=2)
    rater, assignment = first_pair(campaign)

    def durability_after(call) -> str:
        # Read in the call's own transaction, where its commit would read it.
        with transaction.atomic():
            call()
            with connection.cursor() as cursor:
                cursor.execute("SELECT current_setting('synchronous_commit')")
                setting = cursor.fetchone()[0]
            transaction.set_rollback(True)
        return setting

    lease = rating._lease_request(rater=invite_rater(campaign), campaign=campaign)
    assert durability_after(lambda: rating_queries.next_lease_in_one_call(lease)) == "off"
    given = rating._vote_input("A", "", False, None)
    decided = rating._vote_decide(rater=rater, token=assignment.token, given=given, locked=False)
    lease = rating._lease_request(rater=rater, campaign=campaign)

    def vote_then_lease():
        written = rating_queries.write_vote_then_lease(
            values=decided.values, comparison_id=assignment.comparison_id,
            live_after=decided.now + rating.UNLOCKED_VOTE_MARGIN, lease=lease,
        )  # fmt: skip
        assert written is not None and written[1] is not None

    assert durability_after(vote_then_lease) == "on"


@postgres_only
def test_a_failed_lease_takes_the_vote_back_with_it(monkeypatch):
    campaign = build_campaign(n_prompts=6, k=2)
    rater, assignment = first_pair(campaign)
    _, held = first_pair(campaign)
    # A new lease whose token another rater's lease has: its INSERT fails after the vote's writes, in their statement.
    monkeypatch.setattr(rating, "new_token", lambda: held.token)
    with pytest.raises(IntegrityError):
        services.vote_cast(rater=rater, token=assignment.token, choice="A", then_next=True)
    assert not Vote.objects.filter(assignment_id=assignment.pk).exists()
    assert Assignment.objects.get(pk=assignment.pk).status == "leased" and Assignment.objects.count() == 2
    monkeypatch.undo()
    # The rater's retry is a new vote, and is stored.
    result = services.vote_cast(rater=rater, token=assignment.token, choice="A", then_next=True)
    assert result.created and Vote.objects.filter(assignment_id=assignment.pk).count() == 1
    assert result.next is not None and result.next.token != held.token


@postgres_only
def test_when_nothing_is_left_the_vote_is_stored_and_the_long_way_says_so():
    campaign = build_campaign(n_prompts=1, k=1)  # one comparison: after this vote nothing is left for anyone
    rater, assignment = first_pair(campaign)
    with CaptureQueriesContext(connection) as captured:
        result = services.vote_cast(rater=rater, token=assignment.token, choice="B", then_next=True)
    assert "blindeval_vote_then_lease" in captured.captured_queries[1]["sql"]
    assert result.created and result.next is None
    assert Vote.objects.filter(assignment_id=assignment.pk).count() == 1 and Assignment.objects.count() == 1


def test_a_repeated_vote_carries_the_pair_already_leased():
    campaign = build_campaign(n_prompts=6, k=2)
    rater, assignment = first_pair(campaign)
    first = services.vote_cast(rater=rater, token=assignment.token, choice="tie", then_next=True)
    again = services.vote_cast(rater=rater, token=assignment.token, choice="tie", then_next=True)
    assert first.created and not again.created and again.vote.pk == first.vote.pk
    assert first.next is not None and again.next is not None and again.next.pk == first.next.pk


def test_attention_checks_come_with_votes_at_the_configured_rate():
    # The draw is made once per request: drawn again after a vote that could not carry the pair, checks would
    # come at the square of the rate.
    random.seed(7)
    campaign = build_campaign(n_prompts=40, k=40, attention_check_rate=0.25)
    golds = served = 0
    for _ in range(6):
        rater, assignment = first_pair(campaign)
        for _ in range(20):
            result = services.vote_cast(rater=rater, token=assignment.token, choice="both_bad", then_next=True)
            assignment = result.next
            golds += assignment.comparison.is_attention_check
            served += 1
    assert binomtest(golds, served, 0.25).pvalue > 0.001, (golds, served)
