"""A vote read without locks and written in one statement (PostgreSQL): the service takes every decision as
under the locks; the write takes its locks itself and writes nothing when the pair is held by another
transaction, changed since the read, or near the end of its lease, and the vote is then decided again under the
locks, in a transaction."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from comparisons import rating_queries, services
from comparisons.models import Assignment, Comparison, Vote
from comparisons.services import rating
from comparisons.services.campaigns import campaign_stop_check_soon
from tests.comparisons.factories import build_campaign, invite_rater, rows_locked_elsewhere

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks (SQLite locks the whole database)"),
    pytest.mark.django_db(transaction=True),
]


def leased_pair(k: int = 2):
    campaign = build_campaign(n_prompts=3, k=k)
    rater = invite_rater(campaign)
    return rater, services.assignment_next(rater=rater, campaign=campaign)


def stored(assignment):
    fresh = Assignment.objects.get(pk=assignment.pk)
    return (
        fresh.status,
        Vote.objects.filter(assignment=fresh).count(),
        Comparison.objects.get(pk=fresh.comparison_id).votes_count,
    )


def write_values(assignment, now):
    return {
        "assignment_id": assignment.pk, "choice": "left", "winner_response_id": None, "winner_model_id": None,
        "rationale": "", "seconds": 1.0, "submitted_at": now, "attention_failed": False, "identity_reported": False,
    }  # fmt: skip


def test_a_vote_on_a_live_lease_is_one_read_without_locks_and_one_write_outside_a_transaction():
    rater, assignment = leased_pair()
    # Whether the campaign has a stopping rule is looked up once per process and delay after a vote: done now.
    campaign_stop_check_soon(campaign_id=rater.campaign_id)
    with CaptureQueriesContext(connection) as captured:
        result = services.vote_cast(rater=rater, token=assignment.token, choice="A")
    statements = [q["sql"] for q in captured.captured_queries]
    assert len(statements) == 2, statements
    assert "FOR UPDATE" not in statements[0] and "FOR UPDATE OF a, c SKIP LOCKED" in statements[1]
    assert result.created and stored(assignment) == ("voted", 1, 1)


def test_a_pair_held_by_another_transaction_is_not_written_and_the_vote_waits_for_it_under_the_locks():
    rater, assignment = leased_pair()
    held = "SELECT id FROM comparisons_comparison WHERE id = %s FOR UPDATE"
    with rows_locked_elsewhere(held, [assignment.comparison_id]) as release:
        now = timezone.now()
        written = rating_queries.write_vote(
            values=write_values(assignment, now), comparison_id=assignment.comparison_id, counted=1, live_after=now
        )
        assert written is None  # it did not wait
        assert stored(assignment) == ("leased", 0, 0)
        threading.Timer(0.5, release.set).start()
        started = time.monotonic()
        result = services.vote_cast(rater=rater, token=assignment.token, choice="B")
        waited = time.monotonic() - started
    assert result.created and waited >= 0.4  # the long way waited for the lock instead of refusing the vote
    assert stored(assignment) == ("voted", 1, 1)


@pytest.mark.parametrize(
    ("meanwhile", "expected"),
    [("vote A", "the same vote"), ("vote B", "Conflict"), ("skip", "Gone")],
)
def test_a_change_between_the_read_and_the_write_is_decided_again_under_the_locks(monkeypatch, meanwhile, expected):
    rater, assignment = leased_pair()
    read_without_locks = rating_queries.vote_target

    def then_the_rater_acts_in_another_tab(*, token, rater_id, lock=True):
        target = read_without_locks(token=token, rater_id=rater_id, lock=lock)
        if not lock:
            monkeypatch.setattr(rating_queries, "vote_target", read_without_locks)
            if meanwhile == "skip":
                services.assignment_skip(rater=rater, token=token)
            else:
                services.vote_cast(rater=rater, token=token, choice=meanwhile[-1])
        return target

    monkeypatch.setattr(rating_queries, "vote_target", then_the_rater_acts_in_another_tab)
    if expected == "the same vote":
        assert not services.vote_cast(rater=rater, token=assignment.token, choice="A").created
    else:
        with pytest.raises(getattr(services, expected)):
            services.vote_cast(rater=rater, token=assignment.token, choice="A")
    assert stored(assignment) == (("skipped", 0, 0) if meanwhile == "skip" else ("voted", 1, 1))


def test_a_lease_near_its_end_is_voted_under_the_locks_and_the_write_alone_would_refuse_it():
    rater, assignment = leased_pair()
    ends = timezone.now() + rating.UNLOCKED_VOTE_MARGIN - timedelta(seconds=5)
    Assignment.objects.filter(pk=assignment.pk).update(leased_until=ends)
    now = timezone.now()
    assert (
        rating_queries.write_vote(
            values=write_values(assignment, now),
            comparison_id=assignment.comparison_id,
            counted=1,
            live_after=now + rating.UNLOCKED_VOTE_MARGIN,
        )  # fmt: skip
        is None
    )
    assert stored(assignment) == ("leased", 0, 0)
    with CaptureQueriesContext(connection) as captured:
        assert services.vote_cast(rater=rater, token=assignment.token, choice="A").created
    assert any(q["sql"].endswith("FOR UPDATE OF a, c") for q in captured.captured_queries)
    assert stored(assignment) == ("voted", 1, 1)
