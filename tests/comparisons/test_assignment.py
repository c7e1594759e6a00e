"""The assignment engine: fewest votes first, never twice, leases that expire, left/right balanced."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone
from scipy.stats import binomtest

from comparisons import services
from comparisons.models import Assignment, Comparison
from comparisons.services import rating
from tests.comparisons.factories import build_campaign, invite_rater

pytestmark = pytest.mark.django_db


def vote(rater, campaign, choice="A"):
    assignment = services.assignment_next(rater=rater, campaign=campaign)
    assert assignment is not None
    return services.vote_cast(rater=rater, token=assignment.token, choice=choice).vote


def expire(assignment):
    Assignment.objects.filter(pk=assignment.pk).update(leased_until=timezone.now() - timedelta(seconds=1))


def test_same_rater_gets_their_live_assignment_back():
    campaign = build_campaign(n_prompts=4)
    rater = invite_rater(campaign)
    first = services.assignment_next(rater=rater, campaign=campaign)
    again = services.assignment_next(rater=rater, campaign=campaign)
    assert first.pk == again.pk
    assert Assignment.objects.filter(rater=rater).count() == 1


def test_fewest_votes_plus_leases_first():
    campaign = build_campaign(n_prompts=3, k=3)
    raters = [invite_rater(campaign) for _ in range(3)]
    # Three raters each hold a lease: each must land on a different comparison (load 0 before load 1).
    held = [services.assignment_next(rater=r, campaign=campaign).comparison_id for r in raters]
    assert len(set(held)) == 3


def test_a_rater_never_sees_a_comparison_twice_and_runs_out():
    campaign = build_campaign(n_prompts=4, k=5)
    rater = invite_rater(campaign)
    seen = [vote(rater, campaign).assignment.comparison_id for _ in range(4)]
    assert len(set(seen)) == 4
    assert services.assignment_next(rater=rater, campaign=campaign) is None


def test_no_comparison_gets_more_than_k_votes_plus_leases():
    campaign = build_campaign(n_prompts=2, k=2)
    raters = [invite_rater(campaign) for _ in range(6)]
    got = [services.assignment_next(rater=r, campaign=campaign) for r in raters]
    assert sum(a is not None for a in got) == 4  # 2 comparisons x k=2
    assert got[4] is None and got[5] is None
    for comparison in Comparison.objects.filter(campaign=campaign):
        assert comparison.assignments.count() == 2


def test_an_abandoned_lease_returns_to_the_pool():
    campaign = build_campaign(n_prompts=1, k=1)
    first, second = invite_rater(campaign), invite_rater(campaign)
    held = services.assignment_next(rater=first, campaign=campaign)
    assert services.assignment_next(rater=second, campaign=campaign) is None
    expire(held)
    again = services.assignment_next(rater=second, campaign=campaign)
    assert again is not None and again.comparison_id == held.comparison_id
    # The first rater's expired lease is not handed back to them (and the pair is full now).
    assert services.assignment_next(rater=first, campaign=campaign) is None


def test_skip_releases_the_lease_for_others_and_the_skipper_moves_on():
    campaign = build_campaign(n_prompts=2, k=1)
    first, second = invite_rater(campaign), invite_rater(campaign)
    a1 = services.assignment_next(rater=first, campaign=campaign)
    services.assignment_skip(rater=first, token=a1.token)
    a2 = services.assignment_next(rater=first, campaign=campaign)
    assert a2.comparison_id != a1.comparison_id
    a3 = services.assignment_next(rater=second, campaign=campaign)
    assert a3.comparison_id == a1.comparison_id


def test_per_rater_limit_and_closed_or_paused_campaigns_hand_out_nothing():
    campaign = build_campaign(n_prompts=5, comparisons_per_rater=2)
    rater = invite_rater(campaign)
    vote(rater, campaign)
    vote(rater, campaign)
    assert services.assignment_next(rater=rater, campaign=campaign) is None

    other = invite_rater(campaign)
    services.campaign_pause(campaign=campaign)
    assert services.assignment_next(rater=other, campaign=campaign) is None
    services.campaign_open(campaign=campaign)
    assert services.assignment_next(rater=other, campaign=campaign) is not None
    services.campaign_close(campaign=campaign)
    assert services.assignment_next(rater=invite_rater(campaign), campaign=campaign) is None


def test_left_right_order_is_balanced():
    """Over many assignments, response A of the comparison is on the left about half of the time."""
    random.seed(20240601)
    campaign = build_campaign(n_prompts=20, k=20)
    lefts = 0
    total = 0
    for _ in range(20):
        rater = invite_rater(campaign)
        for _ in range(20):
            assignment = services.assignment_next(rater=rater, campaign=campaign)
            lefts += assignment.left_is_a
            total += 1
            services.vote_cast(rater=rater, token=assignment.token, choice="tie")
    assert total == 400
    assert binomtest(lefts, total, 0.5).pvalue > 0.001
    assert 0.4 < lefts / total < 0.6


def test_attention_checks_are_served_at_about_the_configured_rate():
    random.seed(99)
    campaign = build_campaign(n_prompts=40, k=40, attention_check_rate=0.25)
    golds = 0
    served = 0
    for _ in range(8):
        rater = invite_rater(campaign)
        for _ in range(20):
            assignment = services.assignment_next(rater=rater, campaign=campaign)
            golds += assignment.comparison.is_attention_check
            served += 1
            services.vote_cast(rater=rater, token=assignment.token, choice="both_bad")
    assert binomtest(golds, served, 0.25).pvalue > 0.001


def test_ties_are_broken_at_random_not_in_prompt_order():
    # Twenty untouched comparisons tie at load 0 (each rater skips the pair it gets, so the load stays 0):
    # fresh raters must not all start on the same pair, or the same prompts would come first for everyone
    # and prompt would be confounded with rater fatigue.
    campaign = build_campaign(n_prompts=20, k=50)
    firsts: Counter[int] = Counter()
    for _ in range(30):
        rater = invite_rater(campaign)
        assignment = services.assignment_next(rater=rater, campaign=campaign)
        firsts[assignment.comparison_id] += 1
        services.assignment_skip(rater=rater, token=assignment.token)
    # A fixed order gives 1 distinct pair; 30 fair draws over 20 give about 15 (fewer than 8: p < 1e-6).
    assert len(firsts) >= 8, firsts


def test_a_pick_ranks_a_window_in_vote_order_and_widens_it_when_a_lighter_pair_may_lie_beyond(monkeypatch):
    # A pick ranks only the first few comparisons in the order of their votes (here 3 of 12), not the campaign.
    monkeypatch.setattr(rating, "CANDIDATE_WINDOW", 3)
    campaign = build_campaign(n_prompts=12, k=3)
    comparisons = list(Comparison.objects.filter(campaign=campaign).order_by("pk"))
    assert len(comparisons) == 12
    # Every pair has a vote but the last by id: whatever point ties start from, it comes first.
    lightest = comparisons[-1]
    Comparison.objects.filter(campaign=campaign).exclude(pk=lightest.pk).update(votes_count=1)
    for _ in range(8):
        rater = invite_rater(campaign)
        assignment = services.assignment_next(rater=rater, campaign=campaign)
        assert assignment.comparison_id == lightest.pk
        services.assignment_skip(rater=rater, token=assignment.token)

    # Eleven raters hold a lease on eleven of the twelve pairs, all at 0 votes: most windows of 3 hold only
    # leased pairs (load 1), so the pick must look beyond the window for the one free pair (load 0).
    Comparison.objects.filter(campaign=campaign).update(votes_count=0)
    holders = [invite_rater(campaign) for _ in range(11)]
    held = {services.assignment_next(rater=r, campaign=campaign).comparison_id for r in holders}
    assert len(held) == 11
    (free,) = {c.pk for c in comparisons} - held
    for _ in range(5):
        rater = invite_rater(campaign)
        assignment = services.assignment_next(rater=rater, campaign=campaign)
        assert assignment.comparison_id == free
        services.assignment_skip(rater=rater, token=assignment.token)


def test_an_inconclusive_window_widens_step_by_step_before_the_pick_ranks_the_whole_campaign(monkeypatch):
    # On a study of 30,000 pairs, ranking them all costs a hundred times a window's work: a window that holds
    # only leased pairs is first widened fourfold, and the whole campaign is ranked only past the widest window.
    monkeypatch.setattr(rating, "CANDIDATE_WINDOW", 2)
    monkeypatch.setattr(rating, "_WIDEST_WINDOW", 8)
    campaign = build_campaign(n_prompts=12, k=3)
    ids = list(Comparison.objects.filter(campaign=campaign).order_by("pk").values_list("pk", flat=True))
    holders = [invite_rater(campaign) for _ in range(11)]
    held = {services.assignment_next(rater=r, campaign=campaign).comparison_id for r in holders}
    (free,) = set(ids) - held
    # Reading starts just after the free pair, so it is the last of the twelve a window reaches.
    start = ((ids.index(free) + 1) % len(ids) + 0.5) / len(ids)
    monkeypatch.setattr(rating.random, "random", lambda: start)
    windows: list[int | None] = []
    rank = rating.rating_queries.rank_candidates

    def recorded(**kwargs):
        windows.append(kwargs["window"])
        return rank(**kwargs)

    monkeypatch.setattr(rating.rating_queries, "rank_candidates", recorded)
    assignment = services.assignment_next(rater=invite_rater(campaign), campaign=campaign)
    assert assignment.comparison_id == free
    assert windows == [2, 8, None]


@pytest.mark.parametrize("start", [0.0, 0.5, 0.999])
def test_a_pick_wraps_around_among_the_fewest_votes_then_reaches_pairs_with_more(monkeypatch, start):
    # The window reads the pairs with the campaign's fewest votes from a random point, wrapping around, then
    # those with more: wherever the point falls, a pair at the fewest votes comes first while the rater has one
    # left, and once the rater has seen them all the pairs with more votes are still served.
    monkeypatch.setattr(rating, "CANDIDATE_WINDOW", 2)
    monkeypatch.setattr(rating.random, "random", lambda: start)
    campaign = build_campaign(n_prompts=8, k=3)
    comparisons = list(Comparison.objects.filter(campaign=campaign).order_by("pk"))
    lightest = {comparisons[0].pk, comparisons[1].pk}  # the lowest ids: below any high point, so found by wrapping
    Comparison.objects.filter(campaign=campaign).exclude(pk__in=lightest).update(votes_count=1)
    rater = invite_rater(campaign)
    served = []
    while (assignment := services.assignment_next(rater=rater, campaign=campaign)) is not None:
        served.append(assignment.comparison_id)
        services.assignment_skip(rater=rater, token=assignment.token)
    assert set(served[:2]) == lightest
    assert sorted(served) == sorted(c.pk for c in comparisons)  # every pair, each once
