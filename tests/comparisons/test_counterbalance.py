"""Counterbalanced sides: each comparison's k votes are split between the two left/right orders by design
(k even: half each; k odd: one more in one order), whatever raters skip, abandon or vote late."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from comparisons import services
from comparisons.models import Assignment, Campaign, Comparison
from comparisons.selectors import vote_table
from comparisons.services import rating
from comparisons.stats import analyze
from tests.comparisons.factories import build_campaign, invite_rater
from tests.comparisons.test_concurrency import run_raters


def orders_of_votes(campaign: Campaign) -> dict[int, Counter]:
    """Per real comparison: how many of its votes were cast with response A on the left (True) or right (False)."""
    orders: dict[int, Counter] = defaultdict(Counter)
    for comparison_id, left_is_a in Assignment.objects.filter(
        comparison__campaign=campaign, comparison__is_attention_check=False, status=Assignment.Status.VOTED
    ).values_list("comparison_id", "left_is_a"):
        orders[comparison_id][left_is_a] += 1
    return orders


def expire(assignment: Assignment) -> None:
    Assignment.objects.filter(pk=assignment.pk).update(leased_until=timezone.now() - timedelta(seconds=1))


def fill(campaign: Campaign, *, seed: int, raters: int, abandon: float = 0.0, skip: float = 0.0) -> list[Assignment]:
    """Raters in turn take a pair and vote, skip it, or abandon it (its lease left to expire). Returns the
    abandoned assignments (their raters may still vote on them later)."""
    rng = random.Random(seed)
    people = [invite_rater(campaign) for _ in range(raters)]
    abandoned: list[Assignment] = []
    active = list(people)
    while active:
        rater = rng.choice(active)
        assignment = services.assignment_next(rater=rater, campaign=campaign)
        if assignment is None:
            active.remove(rater)
            continue
        draw = rng.random()
        if draw < abandon:
            expire(assignment)
            abandoned.append(assignment)
        elif draw < abandon + skip:
            services.assignment_skip(rater=rater, token=assignment.token)
        else:
            services.vote_cast(rater=rater, token=assignment.token, choice=rng.choice(["A", "B", "tie"]))
    return abandoned


@pytest.mark.django_db
def test_every_comparison_of_a_filled_k2_campaign_was_shown_once_in_each_order():
    campaign = build_campaign(n_prompts=30, k=2)
    fill(campaign, seed=1, raters=4)
    orders = orders_of_votes(campaign)
    assert len(orders) == 30
    assert all(counts == Counter({True: 1, False: 1}) for counts in orders.values())


@pytest.mark.django_db
@pytest.mark.parametrize("k", [3, 4])
def test_the_split_holds_with_skips_abandoned_leases_and_late_votes(k):
    campaign = build_campaign(n_prompts=12, k=k)
    abandoned = fill(campaign, seed=k, raters=k + 4, abandon=0.2, skip=0.15)
    # Raters come back and try to vote on the pairs they let expire: accepted only where the order still has room.
    outcomes = Counter()
    for assignment in abandoned:
        try:
            services.vote_cast(rater=assignment.rater, token=assignment.token, choice="tie")
            outcomes["accepted"] += 1
        except services.Gone:
            outcomes["refused"] += 1
    assert sum(outcomes.values()) == len(abandoned)
    fill(campaign, seed=k + 10, raters=k + 2)  # fresh raters take whatever is left
    orders = orders_of_votes(campaign)
    assert len(orders) == 12
    for counts in orders.values():
        assert counts[True] + counts[False] == k
        assert abs(counts[True] - counts[False]) == k % 2


@pytest.mark.django_db
@pytest.mark.parametrize("same_order", [True, False])
def test_a_late_vote_counts_only_while_its_order_has_room(monkeypatch, same_order):
    # k = 2. The first rater lets their lease expire; with the comparison empty again, the next lease's order is
    # a coin (forced here). Same order as the abandoned one: that order fills, and the late vote is refused.
    # The other order: the late vote still fits, and completes the comparison.
    campaign = build_campaign(n_prompts=1, k=2)
    first, second, third = (invite_rater(campaign) for _ in range(3))
    monkeypatch.setattr(rating.random, "random", lambda: 0.1)  # the coin says "A on the left"
    late = services.assignment_next(rater=first, campaign=campaign)
    assert late.left_is_a
    expire(late)
    monkeypatch.setattr(rating.random, "random", lambda: 0.1 if same_order else 0.9)
    replacement = services.assignment_next(rater=second, campaign=campaign)
    assert replacement.left_is_a == same_order
    services.vote_cast(rater=second, token=replacement.token, choice="A")
    if same_order:
        with pytest.raises(services.Gone, match="filled"):
            services.vote_cast(rater=first, token=late.token, choice="A")
        other = services.assignment_next(rater=third, campaign=campaign)
        assert not other.left_is_a  # the order with room, whatever the coin says
        services.vote_cast(rater=third, token=other.token, choice="B")
    else:
        services.vote_cast(rater=first, token=late.token, choice="A")
        assert services.assignment_next(rater=third, campaign=campaign) is None
    assert orders_of_votes(campaign)[late.comparison_id] == Counter({True: 1, False: 1})


@pytest.mark.django_db
def test_which_order_comes_first_is_random_and_position_bias_is_still_measured():
    campaign = build_campaign(n_prompts=60, k=2)
    first_orders = []
    rater = invite_rater(campaign)
    for _ in range(60):
        assignment = services.assignment_next(rater=rater, campaign=campaign)
        first_orders.append(assignment.left_is_a)
        services.vote_cast(rater=rater, token=assignment.token, choice="A")  # always the left answer
    assert 15 < sum(first_orders) < 45
    fill(campaign, seed=3, raters=1)
    frame = vote_table(campaign=campaign)
    assert (frame["left_model"] == frame["model_a"]).sum() == 60  # each comparison once per order
    bias = analyze(frame, n_boot=0)["position_bias"]
    assert bias["available"] and bias["left_picks"] >= 60  # the first rater's habit of picking the left answer


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL (row locks, SKIP LOCKED)")
def test_many_raters_at_once_still_split_every_comparison_evenly():
    k = 4
    campaign = build_campaign(n_prompts=10, k=k)
    raters = [invite_rater(campaign) for _ in range(12)]

    def rate(rater):
        rng = random.Random(rater.pk)
        while True:
            assignment = services.assignment_next(rater=rater, campaign=campaign)
            if assignment is None:
                live = Q(status=Assignment.Status.LEASED, leased_until__gt=timezone.now())
                if Assignment.objects.filter(live, comparison__campaign=campaign).exclude(rater=rater).exists():
                    time.sleep(0.02)  # a pair someone holds may come back
                    continue
                return
            draw = rng.random()
            if draw < 0.1:
                expire(assignment)  # abandoned
            elif draw < 0.2:
                services.assignment_skip(rater=rater, token=assignment.token)
            else:
                services.vote_cast(rater=rater, token=assignment.token, choice=rng.choice(["A", "B"]))

    errors = run_raters(rate, raters)
    assert not errors, errors
    orders = orders_of_votes(campaign)
    full = [c for c in Comparison.objects.filter(campaign=campaign) if c.votes_count == k]
    assert full, "no comparison was filled"
    for comparison in full:
        assert orders[comparison.pk] == Counter({True: k // 2, False: k // 2})
    for counts in orders.values():  # the rest (raters ran out) never hold more than k/2 votes in one order
        assert max(counts.values()) <= k // 2
