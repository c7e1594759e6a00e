"""Joining by invite link: one participant id is one rater per campaign, whatever browser it comes from."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from comparisons import services
from comparisons.models import Rater, Vote
from tests.comparisons.factories import build_campaign, invite_rater

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("param", ["participant", "PROLIFIC_PID"])
def test_a_returning_participant_in_a_new_browser_resumes_the_same_rater(rater_client, param):
    campaign = build_campaign(n_prompts=4, k=3)
    first_browser = rater_client(campaign, f"?{param}=PID-123")
    voted = first_browser.next(campaign.slug).json()["assignment"]
    assert first_browser.vote(voted, "A").status_code == 201
    held = first_browser.next(campaign.slug).json()["assignment"]

    second_browser = rater_client(campaign, f"?{param}=PID-123")
    assert second_browser.rater.pk == first_browser.rater.pk
    assert Rater.objects.filter(campaign=campaign).count() == 1
    # Same rater: the pair held in the first browser, never the voted pair again, one completion code.
    assert second_browser.next(campaign.slug).json()["assignment"] == held
    assert second_browser.vote(held, "B").status_code == 201
    while (response := second_browser.next(campaign.slug)).status_code == 200:
        token = response.json()["assignment"]
        assert second_browser.vote(token, "tie").status_code == 201
    assert Vote.objects.filter(assignment__rater__participant_id="PID-123").count() == 4
    assert Vote.objects.values("assignment__comparison").distinct().count() == 4


def test_the_same_participant_id_in_another_campaign_is_another_rater(rater_client):
    one = build_campaign(slug="one")
    two = build_campaign(slug="two")
    assert rater_client(one, "?participant=PID-9").rater != rater_client(two, "?participant=PID-9").rater


def test_browsers_without_a_participant_id_are_separate_raters(rater_client):
    campaign = build_campaign()
    assert rater_client(campaign).rater != rater_client(campaign).rater


def test_the_database_refuses_a_second_rater_with_the_same_participant_id():
    campaign = build_campaign()
    invite_rater(campaign, participant_id="PID-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        invite_rater(campaign, participant_id="PID-1")
    rater, created = services.rater_join(campaign=campaign, participant_id=" PID-1 ")
    assert not created and rater.participant_id == "PID-1"
    assert Rater.objects.filter(campaign=campaign).count() == 1


@pytest.mark.parametrize("close", [services.campaign_pause, services.campaign_close])
def test_a_campaign_that_is_not_open_admits_nobody_by_its_invite_link(client, close):
    campaign = build_campaign(slug="paused-or-closed")
    close(campaign=campaign)
    with pytest.raises(services.JoinRefused) as refused:
        services.rater_join(campaign=campaign, participant_id="PID-late")
    assert refused.value.status == 409
    response = client.post(f"/join/{campaign.invite_token}", {"participant": "PID-late"})
    assert response.status_code == 409
    assert "not accepting raters" in response.content.decode()
    assert not Rater.objects.filter(campaign=campaign).exists()


def test_a_deactivated_participant_cannot_join_again(client):
    campaign = build_campaign(slug="open-study")
    rater = invite_rater(campaign, participant_id="PID-banned")
    rater.user.is_active = False
    rater.user.save(update_fields=["is_active"])
    response = client.post(f"/join/{campaign.invite_token}", {"participant": "PID-banned"})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session
