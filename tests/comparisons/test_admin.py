"""The admin: campaign actions call the services, the progress page counts votes, named raters log in."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from comparisons import services
from comparisons.models import Campaign, Rater
from tests.comparisons.factories import build_campaign, build_eval_set, invite_rater

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_():
    user = get_user_model().objects.create_superuser("boss", "boss@example.org", "pw-123456789")
    client = Client()
    client.force_login(user)
    return client


def test_create_in_admin_then_open_with_the_action(admin_client_):
    eval_set, models, _ = build_eval_set(n_prompts=3)
    response = admin_client_.post(
        "/admin/comparisons/campaign/add/",
        {
            "slug": "from-admin",
            "title": "From the admin",
            "eval_set": eval_set.pk,
            "models": [m.pk for m in models],
            "votes_per_comparison": 2,
            "attention_check_rate": 0,
            "lease_seconds": 600,
            "instructions": "Prefer correct answers.",
            "render_mode": "plain",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    campaign = Campaign.objects.get(slug="from-admin")
    assert campaign.status == Campaign.Status.DRAFT
    assert campaign.render_mode == Campaign.Rendering.PLAIN
    response = admin_client_.post(
        "/admin/comparisons/campaign/",
        {"action": "open_campaigns", "_selected_action": [campaign.pk]},
        follow=True,
    )
    assert b"from-admin is open: 3 new comparisons" in response.content.lower()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.OPEN
    admin_client_.post("/admin/comparisons/campaign/", {"action": "pause_campaigns", "_selected_action": [campaign.pk]})
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.PAUSED
    admin_client_.post("/admin/comparisons/campaign/", {"action": "close_campaigns", "_selected_action": [campaign.pk]})
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.CLOSED


def test_admin_refuses_a_campaign_with_one_model(admin_client_):
    eval_set, models, _ = build_eval_set(n_prompts=1)
    response = admin_client_.post(
        "/admin/comparisons/campaign/add/",
        {"slug": "one", "title": "x", "eval_set": eval_set.pk, "models": [models[0].pk],
         "votes_per_comparison": 3, "attention_check_rate": 0, "lease_seconds": 600},
    )  # fmt: skip
    assert response.status_code == 200
    assert b"at least two models" in response.content
    assert not Campaign.objects.filter(slug="one").exists()


def test_progress_page_shows_votes_raters_median_seconds_and_flags(admin_client_):
    campaign = build_campaign(n_prompts=4, k=2)
    fast = invite_rater(campaign, participant_id="prolific-42")
    for _ in range(3):
        assignment = services.assignment_next(rater=fast, campaign=campaign)
        services.vote_cast(rater=fast, token=assignment.token, choice="A")
    Rater.objects.filter(pk=fast.pk).update(flagged=True, flag_reason="Failed an attention check")
    page = admin_client_.get(f"/admin/comparisons/campaign/{campaign.pk}/progress/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "3 / 8" in html
    assert "prolific-42" in html and "Failed an attention check" in html
    assert campaign.invite_token in html


def test_named_rater_created_in_admin_logs_in_and_rates_the_given_campaign(admin_client_):
    campaign = build_campaign(n_prompts=2)
    response = admin_client_.post(
        "/admin/comparisons/rater/add/",
        {"username": "alice", "password": "a-long-pass-phrase", "campaigns": [campaign.pk]},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    rater = Rater.objects.get(user__username="alice")
    assert rater.campaign is None and list(rater.campaigns.all()) == [campaign]

    client = Client()
    assert client.post("/login/", {"username": "alice", "password": "a-long-pass-phrase"}).status_code == 302
    assert client.get(f"/rate/{campaign.slug}/").status_code == 200
    assert client.get(f"/api/rate/next?campaign={campaign.slug}").status_code == 200
    other = build_campaign(slug="other-study", n_prompts=1)
    assert client.get(f"/api/rate/next?campaign={other.slug}").status_code == 404


def test_raters_cannot_reach_the_admin():
    campaign = build_campaign(n_prompts=1)
    rater = invite_rater(campaign)
    client = Client()
    client.force_login(rater.user)
    for url in ("/admin/", f"/admin/comparisons/campaign/{campaign.pk}/progress/", "/admin/comparisons/vote/"):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_without_permissions_get_403_on_the_progress_page():
    campaign = build_campaign(slug="guarded")
    clerk = get_user_model().objects.create_user("clerk", password="pw-123456789", is_staff=True)
    client = Client()
    client.force_login(clerk)
    response = client.get(f"/admin/comparisons/campaign/{campaign.pk}/progress/")
    assert response.status_code == 403


def test_the_admin_links_each_campaign_to_its_results_page(admin_client_):
    campaign = build_campaign(slug="linked")
    results = f'href="/campaigns/{campaign.slug}/results/"'
    for url in (
        "/admin/comparisons/campaign/",
        f"/admin/comparisons/campaign/{campaign.pk}/change/",
        f"/admin/comparisons/campaign/{campaign.pk}/progress/",
    ):
        page = admin_client_.get(url)
        assert page.status_code == 200 and results in page.content.decode(), url
    assert admin_client_.get(f"/campaigns/{campaign.slug}/results/").status_code == 200


def test_the_progress_page_and_the_results_page_count_the_same_votes_leaving_attention_checks_out(admin_client_):
    campaign = build_campaign(n_prompts=4, k=2, attention_check_rate=0.5)
    rater = invite_rater(campaign)
    golds = 0
    while (assignment := services.assignment_next(rater=rater, campaign=campaign)) is not None:
        services.vote_cast(rater=rater, token=assignment.token, choice="A")  # one vote on each pair
        golds += assignment.comparison.is_attention_check
    assert golds == 2  # 4 real pairs, half as many gold ones: 6 votes, 4 of them count
    progress = admin_client_.get(f"/admin/comparisons/campaign/{campaign.pk}/progress/").content.decode()
    assert "4 / 8 (50.0%)" in progress
    services.user_make_analyst(user=get_user_model().objects.get(username="boss"))
    results = admin_client_.get(f"/campaigns/{campaign.slug}/results/").content.decode()
    assert "4 of 8 votes collected" in results and "4 still missing" in results
