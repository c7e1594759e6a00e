"""What one rater may do: the per-rater cap holds at vote time, a skip is final, hoarded pairs voted in a burst
are timed as a burst, the completion code needs real work, and a rater removed from a campaign is out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from comparisons import services
from comparisons.models import Assignment, Vote
from tests.comparisons.conftest import RaterClient
from tests.comparisons.factories import build_campaign, invite_rater

pytestmark = pytest.mark.django_db


def expire(token: str) -> None:
    Assignment.objects.filter(token=token).update(leased_until=timezone.now() - timedelta(seconds=1))


def hoard(client: RaterClient, slug: str, n: int) -> list[str]:
    """Take n pairs without voting, letting each lease expire so `next` serves another."""
    tokens = []
    for _ in range(n):
        token = client.next(slug).json()["assignment"]
        expire(token)
        tokens.append(token)
    return tokens


def test_the_per_rater_cap_holds_for_votes_on_pairs_taken_before_it_was_reached(rater_client):
    campaign = build_campaign(n_prompts=12, k=3, comparisons_per_rater=3)
    client = rater_client(campaign)
    tokens = hoard(client, campaign.slug, 6)
    answers = [client.vote(token, "A") for token in tokens]
    assert [a.status_code for a in answers] == [201, 201, 201, 410, 410, 410]
    assert "asks of one rater" in answers[3].json()["error"]
    assert Vote.objects.filter(assignment__rater=client.rater).count() == 3
    assert client.next(campaign.slug).status_code == 204


def test_a_skipped_pair_cannot_be_voted_on_later(rater_client):
    campaign = build_campaign(n_prompts=12, k=3, comparisons_per_rater=3)
    client = rater_client(campaign)
    skipped = []
    for _ in range(5):
        token = client.next(campaign.slug).json()["assignment"]
        assert client.skip(token).status_code == 200
        skipped.append(token)
    answers = [client.vote(token, "B") for token in skipped]
    assert {a.status_code for a in answers} == {410}
    assert "skipped" in answers[0].json()["error"]
    assert not Vote.objects.exists()
    # The no-JavaScript form is refused the same way.
    client.post(
        f"/rate/{campaign.slug}/vote", {"csrfmiddlewaretoken": client.csrf(), "assignment": skipped[0], "choice": "A"}
    )
    assert not Vote.objects.exists()


def test_hoarded_pairs_voted_in_a_burst_are_timed_from_the_previous_vote_and_flagged_too_fast(rater_client):
    campaign = build_campaign(n_prompts=6, k=3)
    client = rater_client(campaign)
    tokens = hoard(client, campaign.slug, 4)
    # Served a quarter of an hour ago: by the clock since serving, every one would look carefully read.
    Assignment.objects.filter(token__in=tokens).update(created_at=timezone.now() - timedelta(minutes=15))
    for token in tokens:
        assert client.vote(token, "tie").status_code == 201
    seconds = [Vote.objects.get(assignment__token=t).seconds for t in tokens]
    assert seconds[0] >= 15 * 60 - 5
    assert all(s < settings.MIN_SECONDS_PER_VOTE for s in seconds[1:]), seconds


def test_a_vote_after_a_pause_of_reading_keeps_its_time_since_serving():
    campaign = build_campaign(n_prompts=4, k=3)
    rater = invite_rater(campaign)
    first = services.assignment_next(rater=rater, campaign=campaign)
    services.vote_cast(rater=rater, token=first.token, choice="A")
    Vote.objects.filter(assignment=first).update(submitted_at=timezone.now() - timedelta(minutes=5))
    Assignment.objects.filter(pk=first.pk).update(closed_at=timezone.now() - timedelta(minutes=5))
    second = services.assignment_next(rater=rater, campaign=campaign)
    Assignment.objects.filter(pk=second.pk).update(created_at=timezone.now() - timedelta(seconds=40))
    vote = services.vote_cast(rater=rater, token=second.token, choice="B").vote
    assert 39 <= vote.seconds <= 60


def completion_page(client: RaterClient, slug: str) -> str:
    return client.get(f"/rate/{slug}/done", follow=True).content.decode()


def test_one_vote_and_many_skips_earn_no_completion_code(rater_client):
    campaign = build_campaign(n_prompts=10, k=1)
    client = rater_client(campaign)
    first = client.next(campaign.slug).json()["assignment"]
    assert client.vote(first, "A").status_code == 201
    while (response := client.next(campaign.slug)).status_code == 200:
        assert client.skip(response.json()["assignment"]).status_code == 200
    html = completion_page(client, campaign.slug)
    assert client.rater.completion_code not in html
    assert "at least as many pairs as you skipped" in html


def test_the_completion_code_comes_with_the_cap_reached_by_votes(rater_client):
    campaign = build_campaign(n_prompts=10, k=1, comparisons_per_rater=2)
    client = rater_client(campaign)
    first = client.next(campaign.slug).json()["assignment"]
    assert client.skip(first).status_code == 200
    assert client.rater.completion_code not in completion_page(client, campaign.slug)
    for _ in range(2):
        assert client.vote(client.next(campaign.slug).json()["assignment"], "B").status_code == 201
    html = completion_page(client, campaign.slug)
    assert "you are done" in html and client.rater.completion_code in html


def test_the_completion_code_when_nothing_is_left_after_more_votes_than_skips(rater_client):
    campaign = build_campaign(n_prompts=3, k=1)
    client = rater_client(campaign)
    tokens = [client.next(campaign.slug).json()["assignment"]]
    assert client.skip(tokens[0]).status_code == 200
    while (response := client.next(campaign.slug)).status_code == 200:
        assert client.vote(response.json()["assignment"], "tie").status_code == 201
    assert client.rater.completion_code in completion_page(client, campaign.slug)


@pytest.fixture
def removed_named_rater():
    """A named rater signed in with a pair in hand and one skipped, then removed from the campaign."""
    campaign = build_campaign(n_prompts=6, k=3)
    rater = services.rater_create_named(username="named-one", password="pw-123456789", campaigns=[campaign])
    client = RaterClient()
    client.csrf()
    client.force_login(rater.user)
    skipped = client.next(campaign.slug).json()["assignment"]
    assert client.skip(skipped).status_code == 200
    held = client.next(campaign.slug).json()["assignment"]
    rater.campaigns.remove(campaign)
    return campaign, client, held, skipped


def test_a_named_rater_removed_from_a_campaign_cannot_vote_or_skip(removed_named_rater):
    campaign, client, held, skipped = removed_named_rater
    assert client.vote(held, "A").status_code == 404
    assert client.vote(skipped, "A").status_code == 404
    assert client.skip(held).status_code == 404
    assert Assignment.objects.get(token=held).status == Assignment.Status.LEASED
    assert not Vote.objects.exists()


def test_a_removed_named_rater_cannot_vote_through_the_form_either(removed_named_rater):
    campaign, client, held, _ = removed_named_rater
    for extra in ({"choice": "A"}, {"skip": "1"}):
        response = client.post(
            f"/rate/{campaign.slug}/vote", {"csrfmiddlewaretoken": client.csrf(), "assignment": held, **extra}
        )
        assert response.status_code == 404
    assert not Vote.objects.exists()
    assert Assignment.objects.get(token=held).status == Assignment.Status.LEASED
    # The service itself refuses, whatever view calls it.
    rater = client.rater
    with pytest.raises(services.NotFound):
        services.vote_cast(rater=rater, token=held, choice="A")
    with pytest.raises(services.NotFound):
        services.assignment_skip(rater=rater, token=held)
