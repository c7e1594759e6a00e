"""vote_cast: one vote per assignment, mapped to the model actually shown on the picked side."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from comparisons import services
from comparisons.models import Assignment, Rater, Vote
from tests.comparisons.factories import build_campaign, invite_rater

pytestmark = pytest.mark.django_db


def leased(campaign, rater=None):
    rater = rater or invite_rater(campaign)
    return rater, services.assignment_next(rater=rater, campaign=campaign)


@pytest.mark.parametrize("choice", ["A", "B", "tie", "both_bad"])
def test_choice_is_resolved_to_the_model_on_that_side(choice):
    campaign = build_campaign(n_prompts=2)
    rater, assignment = leased(campaign)
    result = services.vote_cast(rater=rater, token=assignment.token, choice=choice, rationale="  clearer  ")
    vote = result.vote
    assert result.created
    comparison = assignment.comparison
    left = comparison.response_a if assignment.left_is_a else comparison.response_b
    right = comparison.response_b if assignment.left_is_a else comparison.response_a
    expected = {"A": left, "B": right}.get(choice)
    assert vote.winner_response == expected
    assert vote.winner_model == (expected.model if expected else None)
    assert vote.choice == {"A": "left", "B": "right"}.get(choice, choice)
    assert vote.rationale == "clearer"
    assert vote.seconds >= 0
    comparison.refresh_from_db()
    assert comparison.votes_count == 1
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.VOTED


def test_same_vote_again_returns_the_stored_vote_and_a_different_one_conflicts():
    campaign = build_campaign(n_prompts=2)
    rater, assignment = leased(campaign)
    first = services.vote_cast(rater=rater, token=assignment.token, choice="B")
    again = services.vote_cast(rater=rater, token=assignment.token, choice="B")
    assert not again.created and again.vote.pk == first.vote.pk
    with pytest.raises(services.Conflict):
        services.vote_cast(rater=rater, token=assignment.token, choice="A")
    assert Vote.objects.count() == 1
    assignment.comparison.refresh_from_db()
    assert assignment.comparison.votes_count == 1


def test_unknown_token_and_another_raters_token_are_not_found():
    campaign = build_campaign(n_prompts=2)
    owner, assignment = leased(campaign)
    stranger = invite_rater(campaign)
    with pytest.raises(services.NotFound):
        services.vote_cast(rater=stranger, token=assignment.token, choice="A")
    with pytest.raises(services.NotFound):
        services.vote_cast(rater=owner, token="no-such-token", choice="A")
    assert Vote.objects.count() == 0


def test_bad_choice_is_refused():
    campaign = build_campaign(n_prompts=1)
    rater, assignment = leased(campaign)
    with pytest.raises(services.InvalidChoice, match="one of A, B, tie, both_bad"):
        services.vote_cast(rater=rater, token=assignment.token, choice="left")
    assert Vote.objects.count() == 0


def test_expired_lease_is_accepted_while_the_comparison_is_under_quota():
    campaign = build_campaign(n_prompts=1, k=2)
    rater, assignment = leased(campaign)
    Assignment.objects.filter(pk=assignment.pk).update(leased_until=timezone.now() - timedelta(minutes=1))
    assert services.vote_cast(rater=rater, token=assignment.token, choice="A").created


def test_expired_lease_is_gone_once_others_filled_the_comparison():
    campaign = build_campaign(n_prompts=1, k=1)
    late, assignment = leased(campaign)
    Assignment.objects.filter(pk=assignment.pk).update(leased_until=timezone.now() - timedelta(minutes=1))
    other, taken = leased(campaign)
    assert taken.comparison_id == assignment.comparison_id
    with pytest.raises(services.Gone):
        services.vote_cast(rater=late, token=assignment.token, choice="A")
    # The other rater's live lease still gets its vote, and the comparison ends at exactly k.
    services.vote_cast(rater=other, token=taken.token, choice="B")
    taken.comparison.refresh_from_db()
    assert taken.comparison.votes_count == 1


def test_closed_campaign_refuses_votes_paused_accepts_them():
    campaign = build_campaign(n_prompts=2)
    rater, first = leased(campaign)
    services.campaign_pause(campaign=campaign)
    assert services.vote_cast(rater=rater, token=first.token, choice="A").created
    services.campaign_open(campaign=campaign)
    second = services.assignment_next(rater=rater, campaign=campaign)
    services.campaign_close(campaign=campaign)
    with pytest.raises(services.Gone, match="closed"):
        services.vote_cast(rater=rater, token=second.token, choice="A")


def test_failing_an_attention_check_flags_the_rater():
    campaign = build_campaign(n_prompts=6, attention_check_rate=1.0)
    rater = invite_rater(campaign)
    assignment = services.assignment_next(rater=rater, campaign=campaign)
    assert assignment.comparison.is_attention_check
    # Pick the off-prompt answer (response_b of a gold pair).
    wrong = "B" if assignment.left_is_a else "A"
    vote = services.vote_cast(rater=rater, token=assignment.token, choice=wrong).vote
    assert vote.attention_failed
    rater = Rater.objects.get(pk=rater.pk)
    assert rater.flagged and "attention check" in rater.flag_reason
    # Gold votes do not count toward any comparison's k.
    assignment.comparison.refresh_from_db()
    assert assignment.comparison.votes_count == 0


def test_passing_an_attention_check_does_not_flag():
    campaign = build_campaign(n_prompts=6, attention_check_rate=1.0)
    rater = invite_rater(campaign)
    assignment = services.assignment_next(rater=rater, campaign=campaign)
    right = "A" if assignment.left_is_a else "B"
    assert not services.vote_cast(rater=rater, token=assignment.token, choice=right).vote.attention_failed
    assert not Rater.objects.get(pk=rater.pk).flagged
