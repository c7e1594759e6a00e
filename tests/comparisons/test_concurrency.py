"""Many raters at once on PostgreSQL: exactly k votes per comparison, none doubled, no rater twice.

Runs on PostgreSQL only (CI sets DATABASE_URL=postgres://…): SQLite serializes every
write transaction, so there is no race there to test. Each thread is one rater with its
own database connection.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest
from django.db import connection, connections

from comparisons import rating_queries, services
from comparisons.models import Assignment, Comparison, Rater, Vote
from comparisons.services import rating
from tests.comparisons.factories import build_campaign, invite_rater

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL (row locks, SKIP LOCKED)"),
]


def run_raters(worker, raters) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(raters))

    def target(rater):
        try:
            barrier.wait(timeout=30)
            worker(rater)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(r,)) for r in raters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a rater thread hung (deadlock?)"
    return errors


def test_many_raters_voting_at_once_fill_every_comparison_exactly_k_times():
    k = 3
    campaign = build_campaign(n_prompts=12, k=k)
    raters = [invite_rater(campaign) for _ in range(16)]
    acknowledged = Counter()

    def rate_until_done(rater):
        rng = random.Random(rater.pk)
        while True:
            assignment = services.assignment_next(rater=rater, campaign=campaign)
            if assignment is None:
                # A pair another rater holds counts as full until that rater votes or skips it; a skipped
                # pair comes back, so ask again (as the rater page does) while someone else holds one.
                held = Assignment.objects.filter(
                    comparison__campaign=campaign, status=Assignment.Status.LEASED
                ).exclude(rater=rater)
                if held.exists():
                    time.sleep(0.02)
                    continue
                return
            if rng.random() < 0.1:
                services.assignment_skip(rater=rater, token=assignment.token)
                continue
            choice = rng.choice(["A", "B", "tie", "both_bad"])
            result = services.vote_cast(rater=rater, token=assignment.token, choice=choice)
            assert result.created
            # A double submission (retry after a lost answer) must not add a vote.
            assert not services.vote_cast(rater=rater, token=assignment.token, choice=choice).created
            acknowledged[rater.pk] += 1

    errors = run_raters(rate_until_done, raters)
    assert errors == []
    comparisons = list(Comparison.objects.filter(campaign=campaign))
    for comparison in comparisons:
        votes = Vote.objects.filter(assignment__comparison=comparison)
        assert votes.count() == k, f"comparison has {votes.count()} votes"
        assert comparison.votes_count == k
        raters_on_it = list(votes.values_list("assignment__rater_id", flat=True))
        assert len(raters_on_it) == len(set(raters_on_it))
    assert Vote.objects.count() == sum(acknowledged.values()) == len(comparisons) * k
    pairs = Assignment.objects.values_list("comparison_id", "rater_id")
    assert len(pairs) == len(set(pairs))


def test_the_last_free_slot_goes_to_exactly_one_of_many_simultaneous_raters():
    campaign = build_campaign(n_prompts=1, k=1)
    raters = [invite_rater(campaign) for _ in range(20)]
    got = []

    def ask(rater):
        assignment = services.assignment_next(rater=rater, campaign=campaign)
        if assignment is not None:
            got.append(assignment.token)

    assert run_raters(ask, raters) == []
    assert len(got) == 1
    assert Assignment.objects.count() == 1


def test_simultaneous_duplicate_submissions_record_one_vote():
    campaign = build_campaign(n_prompts=1, k=1)
    rater = invite_rater(campaign)
    assignment = services.assignment_next(rater=rater, campaign=campaign)
    created = []

    def submit(_):
        created.append(services.vote_cast(rater=rater, token=assignment.token, choice="A").created)

    same_rater = [Rater.objects.get(pk=rater.pk) for _ in range(8)]
    assert run_raters(submit, same_rater) == []
    assert sorted(created) == [False] * 7 + [True]
    assert Vote.objects.count() == 1


def test_one_rater_voting_hoarded_pairs_at_once_cannot_pass_the_per_rater_cap():
    """Two tabs (or a script) voting expired pairs in parallel: the last vote the cap allows goes to one."""
    from datetime import timedelta

    from django.utils import timezone

    campaign = build_campaign(n_prompts=10, k=3, comparisons_per_rater=3)
    rater = invite_rater(campaign)
    for _ in range(2):
        served = services.assignment_next(rater=rater, campaign=campaign)
        services.vote_cast(rater=rater, token=served.token, choice="A")
    hoard = []
    for _ in range(6):
        assignment = services.assignment_next(rater=rater, campaign=campaign)
        Assignment.objects.filter(pk=assignment.pk).update(leased_until=timezone.now() - timedelta(seconds=1))
        hoard.append(assignment.token)
    outcomes = []

    def submit(token_and_rater):
        token, same_rater = token_and_rater
        try:
            services.vote_cast(rater=same_rater, token=token, choice="B")
            outcomes.append("voted")
        except services.Gone:
            outcomes.append("refused")

    assert run_raters(submit, [(t, Rater.objects.get(pk=rater.pk)) for t in hoard]) == []
    assert sorted(outcomes) == ["refused"] * 5 + ["voted"]
    assert Vote.objects.filter(assignment__rater=rater).count() == 3


def test_one_participant_joining_from_several_browsers_at_once_is_one_rater():
    campaign = build_campaign(n_prompts=2, k=1)
    joined = []

    def join(_):
        joined.append(services.rater_join(campaign=campaign, participant_id="PID-race"))

    assert run_raters(join, list(range(8))) == []
    assert len({rater.pk for rater, _ in joined}) == 1
    assert sorted(created for _, created in joined) == [False] * 7 + [True]
    assert Rater.objects.filter(campaign=campaign).count() == 1


def test_raters_voting_at_once_through_the_http_api():
    """The same through the API (session, CSRF, views), each browser in its own thread with its own connection."""
    from tests.comparisons.conftest import RaterClient

    k = 2
    campaign = build_campaign(n_prompts=8, k=k)
    clients = []
    for _ in range(10):
        client = RaterClient()
        assert client.join(campaign).status_code == 302
        clients.append(client)
    acknowledged = []

    def rate_until_done(client):
        while True:
            response = client.next(campaign.slug)
            if response.status_code == 204:
                return
            assert response.status_code == 200, response.content
            token = response.json()["assignment"]
            voted = client.vote(token, "A")
            assert voted.status_code == 201, voted.content
            acknowledged.append(token)

    assert run_raters(rate_until_done, clients) == []
    assert len(acknowledged) == len(set(acknowledged)) == Vote.objects.count() == 8 * k
    for comparison in Comparison.objects.filter(campaign=campaign):
        assert comparison.votes_count == k == comparison.assignments.filter(status="voted").count()


def test_a_candidate_that_filled_after_ranking_is_unlocked_before_the_next_is_tried(monkeypatch):
    # The deadlock this guards against: attempt 1 locks a pair that turns out full, then waits for another pair
    # while still holding the first; a rival doing the same in the other order waits forever. Here the pick
    # hands out a full pair first; when the second pick runs, another connection must be able to lock it. (The
    # one-call lease never waits for a pair's lock: a pair it finds full ends its call, and the long way, tested
    # here, takes over.)
    monkeypatch.setattr(rating_queries, "_connections_kept", lambda: False)
    campaign = build_campaign(n_prompts=2, k=1)
    full, free = Comparison.objects.filter(campaign=campaign).order_by("pk")
    Comparison.objects.filter(pk=full.pk).update(votes_count=1)  # at k: the lease INSERT refuses it
    rater = invite_rater(campaign)
    picked, locked_while_retrying = [], []
    real_pick = rating._pick_candidate

    def pick(*, rater, campaign, now, tried):
        if not picked:
            picked.append(full.pk)
            rating_queries.lock_comparison(full.pk)
            return full.pk

        def probe():
            with connections["default"].cursor() as other:
                other.execute("SELECT id FROM comparisons_comparison WHERE id = %s FOR UPDATE SKIP LOCKED", [full.pk])
                locked_while_retrying.append(other.fetchone() is None)
            connections.close_all()

        prober = threading.Thread(target=probe)
        prober.start()
        prober.join(timeout=30)
        picked.append("again")
        return real_pick(rater=rater, campaign=campaign, now=now, tried=tried)

    monkeypatch.setattr(rating, "_pick_candidate", pick)
    assignment = services.assignment_next(rater=rater, campaign=campaign)
    assert assignment is not None and assignment.comparison_id == free.pk
    assert locked_while_retrying == [False], "the full pair was still locked during the second attempt"
