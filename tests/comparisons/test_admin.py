"""The admin: campaign actions call the services, the progress page counts votes, named raters log in."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.http import HttpRequest
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


def campaign_form(eval_set, models, **overrides) -> dict:
    data = {
        "slug": "from-admin", "title": "From the admin", "eval_set": eval_set.pk, "models": [m.pk for m in models],
        "votes_per_comparison": 3, "attention_check_rate": 0, "lease_seconds": 600, "render_mode": "markdown",
    }  # fmt: skip
    return {**data, **overrides}


def form_errors(response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.status_code  # the form again, nothing saved
    return {name: list(errors) for name, errors in response.context["adminform"].form.errors.items()}


def test_admin_refuses_a_campaign_with_one_model_with_the_services_message_on_the_models_field(admin_client_):
    eval_set, models, _ = build_eval_set(n_prompts=1)
    response = admin_client_.post("/admin/comparisons/campaign/add/", campaign_form(eval_set, models[:1]))
    assert form_errors(response) == {
        "models": ["A campaign compares at least two different models (a baseline counts as one)."]
    }
    assert not Campaign.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (
            {"attention_check_rate": "1.5"},
            "attention_check_rate",
            "The attention-check rate is a share between 0 and 1.",
        ),
        ({"votes_per_comparison": "0"}, "votes_per_comparison", "Votes per comparison must be at least 1."),
        ({"lease_seconds": "0"}, "lease_seconds", "A served pair must be held for at least 1 second."),
        ({"prompt_limit": "0"}, "prompt_limit", "The prompt limit must be at least 1 (or empty: every prompt)."),
        ({"comparisons_per_rater": "0"}, "comparisons_per_rater", "Pairs per rater must be at least 1"),
    ],
)
def test_admin_create_form_shows_each_refused_setting_under_its_field(admin_client_, overrides, field, message):
    eval_set, models, _ = build_eval_set(n_prompts=2)
    response = admin_client_.post("/admin/comparisons/campaign/add/", campaign_form(eval_set, models, **overrides))
    errors = form_errors(response)
    assert list(errors) == [field] and len(errors[field]) == 1 and errors[field][0].startswith(message)
    assert not Campaign.objects.exists()


def test_admin_refuses_prompts_of_another_eval_set_and_a_taken_slug_once_each(admin_client_):
    eval_set, models, _ = build_eval_set(n_prompts=2)
    other = build_campaign(slug="taken", n_prompts=1)
    foreign = other.eval_set.prompts.first()
    response = admin_client_.post(
        "/admin/comparisons/campaign/add/", campaign_form(eval_set, models, slug="taken", prompts=[foreign.pk])
    )
    assert form_errors(response) == {
        "slug": ["A campaign with slug 'taken' already exists; choose another slug."],
        "prompts": ["Every prompt of the subset must belong to the campaign's eval set."],
    }
    assert Campaign.objects.count() == 1


def test_admin_create_counts_the_baseline_among_the_compared_models(admin_client_):
    eval_set, models, _ = build_eval_set(n_prompts=2)
    response = admin_client_.post(
        "/admin/comparisons/campaign/add/", campaign_form(eval_set, models[:1], baseline=models[1].pk)
    )
    assert response.status_code == 302, form_errors(response)
    campaign = Campaign.objects.get(slug="from-admin")
    assert set(campaign.models.all()) == set(models) and campaign.baseline == models[1]


def test_admin_changes_settings_through_the_service_and_refuses_bad_ones(admin_client_):
    campaign = build_campaign(slug="running", n_prompts=2, k=2)
    url = f"/admin/comparisons/campaign/{campaign.pk}/change/"
    page = admin_client_.get(url)
    assert f'value="http://testserver/join/{campaign.invite_token}"' in page.content.decode()  # absolute link
    # The compared models are fixed once the comparisons exist: shown, not editable.
    assert "models" not in page.context["adminform"].form.fields
    edit = {
        "slug": "running", "title": "Renamed", "votes_per_comparison": 5, "attention_check_rate": 0,
        "lease_seconds": 300, "render_mode": "plain", "instructions": "Be fair.",
    }  # fmt: skip
    response = admin_client_.post(url, {**edit, "lease_seconds": 0})
    assert form_errors(response) == {"lease_seconds": ["A served pair must be held for at least 1 second."]}
    campaign.refresh_from_db()
    assert (campaign.title, campaign.lease_seconds) == ("Title of running", 600)
    assert admin_client_.post(url, edit).status_code == 302
    campaign.refresh_from_db()
    assert (campaign.title, campaign.votes_per_comparison, campaign.lease_seconds) == ("Renamed", 5, 300)
    assert campaign.render_mode == Campaign.Rendering.PLAIN and campaign.comparisons.count() == 2


def test_the_campaign_admin_keeps_no_request_of_its_own(admin_client_):
    from django.contrib import admin

    campaign = build_campaign(slug="shared")
    admin_client_.get(f"/admin/comparisons/campaign/{campaign.pk}/change/")
    for model_admin in admin.site._registry.values():
        assert not any(isinstance(value, HttpRequest) for value in vars(model_admin).values()), model_admin


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
    # Two gold pairs were built; serve them whenever one is left (else a gold pair is a coin per request and
    # the real pairs may run out first).
    campaign.attention_check_rate = 1.0
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


def test_the_unflag_action_clears_flags_through_the_service_and_counts_only_flagged_raters(admin_client_):
    campaign = build_campaign(n_prompts=2)
    flagged, clean = invite_rater(campaign), invite_rater(campaign)
    Rater.objects.filter(pk=flagged.pk).update(flagged=True, flag_reason="Failed an attention check")
    response = admin_client_.post(
        "/admin/comparisons/rater/", {"action": "unflag", "_selected_action": [flagged.pk, clean.pk]}, follow=True
    )
    assert "1 rater(s) unflagged." in response.content.decode()
    flagged.refresh_from_db()
    assert (flagged.flagged, flagged.flag_reason) == (False, "")


def test_the_rater_list_counts_votes_in_a_fixed_number_of_queries(admin_client_, django_assert_max_num_queries):
    campaign = build_campaign(n_prompts=3, k=3)
    votes = {}
    for i in range(6):
        rater = invite_rater(campaign, participant_id=f"PID-{i}")
        for _ in range(i % 4):
            assignment = services.assignment_next(rater=rater, campaign=campaign)
            services.vote_cast(rater=rater, token=assignment.token, choice="A")
        votes[f"PID-{i}"] = i % 4
    with django_assert_max_num_queries(8):  # 6 today; one count per row made it 12
        page = admin_client_.get("/admin/comparisons/rater/?o=5")  # sorted by the vote count
    assert page.status_code == 200
    rows = page.context["cl"].result_list
    assert {r.participant_id: r.votes for r in rows} == votes
    assert [r.votes for r in rows] == sorted(votes.values())
    assert '<td class="field-vote_count">3</td>' in page.content.decode()


def test_changing_a_rater_in_the_admin_goes_through_the_service(admin_client_):
    one, two = build_campaign(slug="one", n_prompts=1), build_campaign(slug="two", n_prompts=1)
    rater = services.rater_create_named(username="carol", password="a-long-pass-phrase", campaigns=[one])
    url = f"/admin/comparisons/rater/{rater.pk}/change/"
    response = admin_client_.post(url, {"campaigns": [two.pk], "flagged": "on", "flag_reason": "  Copies answers  "})
    assert response.status_code == 302
    rater.refresh_from_db()
    assert list(rater.campaigns.all()) == [two] and (rater.flagged, rater.flag_reason) == (True, "Copies answers")
    admin_client_.post(url, {"campaigns": [two.pk], "flag_reason": "Copies answers"})  # the box unticked
    rater.refresh_from_db()
    assert (rater.flagged, rater.flag_reason) == (False, "")  # no reason without a flag
