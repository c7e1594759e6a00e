"""The rater pages rendered by the server: pair, buttons, progress, safe Markdown, end page, no-JS fallback."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import AnonymousUser, Group
from django.http import HttpResponse
from django.test import RequestFactory

from comparisons.access import analyst_required, rater_for_user, user_is_analyst
from comparisons.models import Comparison, Vote
from tests.comparisons.factories import build_campaign, invite_rater, make_user

pytestmark = pytest.mark.django_db


def test_rate_page_shows_the_pair_buttons_shortcuts_and_progress(rater_client):
    campaign = build_campaign(n_prompts=3, instructions="Prefer **correct** answers.")
    client = rater_client(campaign)
    page = client.get(f"/rate/{campaign.slug}/")
    html = page.content.decode()
    assert page.status_code == 200
    for text in ["Response A", "Response B", "A is better", "Tie", "B is better", "Both are bad", "Skip this pair"]:
        assert text in html
    assert 'role="progressbar"' in html and 'aria-valuenow="0"' in html and 'aria-valuemax="3"' in html
    assert '<label for="rationale">' in html
    assert 'aria-keyshortcuts="1 A"' in html
    assert "<strong>correct</strong>" in html  # the campaign's guidance, rendered
    # Scripts only from static files (the CSP forbids inline scripts).
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/comparisons/rate.js" defer>']
    assert page["Cache-Control"].startswith("max-age=0")


def test_hostile_response_text_renders_inert(rater_client):
    campaign = build_campaign(n_prompts=1)
    comparison = Comparison.objects.get(campaign=campaign)
    hostile = '<script>alert("x")</script> <img src=x onerror=alert(1)> **bold**\n\n| a | b |\n|---|---|\n| 1 | 2 |'
    comparison.response_a.text = hostile
    comparison.response_a.save()
    client = rater_client(campaign)
    html = client.get(f"/rate/{campaign.slug}/").content.decode()
    assert "<script>alert" not in html and "<img" not in html
    assert "&lt;script&gt;" in html and "<strong>bold</strong>" in html and "<table>" in html
    # The API returns the text exactly as stored; only the page's HTML is rendered.
    assert hostile in client.next(campaign.slug).json()["responses"].values()


def test_no_javascript_form_votes_and_the_end_page_shows_the_completion_code(rater_client):
    campaign = build_campaign(n_prompts=2, k=1)
    client = rater_client(campaign)
    for _ in range(2):
        page = client.get(f"/rate/{campaign.slug}/").content.decode()
        token = re.search(r'id="assignment" value="([^"]+)"', page).group(1)
        posted = client.post(
            f"/rate/{campaign.slug}/vote", {"csrfmiddlewaretoken": client.csrf(), "assignment": token, "choice": "tie"}
        )
        assert posted.status_code == 302
    assert Vote.objects.count() == 2
    end = client.get(f"/rate/{campaign.slug}/", follow=True)
    assert end.redirect_chain[-1][0] == f"/rate/{campaign.slug}/done"
    html = end.content.decode()
    assert "you are done" in html and client.rater.completion_code in html


def test_a_rater_with_nothing_to_do_gets_no_completion_code(rater_client):
    campaign = build_campaign(n_prompts=1, k=1)
    busy = invite_rater(campaign)
    from comparisons import services

    services.assignment_next(rater=busy, campaign=campaign)
    client = rater_client(campaign)
    html = client.get(f"/rate/{campaign.slug}/", follow=True).content.decode()
    assert "Nothing to judge right now" in html and "completion code" not in html


def test_done_page_sends_a_rater_with_work_back_to_the_pairs(rater_client):
    campaign = build_campaign(n_prompts=2)
    client = rater_client(campaign)
    response = client.get(f"/rate/{campaign.slug}/done")
    assert response.status_code == 302 and response["Location"] == f"/rate/{campaign.slug}/"


def test_anonymous_visitors_are_sent_to_log_in():
    campaign = build_campaign(n_prompts=1)
    from django.test import Client

    response = Client().get(f"/rate/{campaign.slug}/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_roles():
    campaign = build_campaign(n_prompts=1)
    rater = invite_rater(campaign)
    analyst = make_user("ana")
    analyst.groups.add(Group.objects.get(name="analyst"))
    boss = make_user("boss", is_staff=True, is_superuser=True)
    assert rater_for_user(rater.user) == rater and not user_is_analyst(rater.user)
    assert user_is_analyst(analyst) and rater_for_user(analyst) is None
    assert user_is_analyst(boss)
    assert not user_is_analyst(AnonymousUser())

    @analyst_required
    def results(request):
        return HttpResponse("numbers")

    factory = RequestFactory()
    for user, status in [(analyst, 200), (boss, 200), (rater.user, 403)]:
        request = factory.get("/results/x/")
        request.user = user
        assert results(request).status_code == status
    request = factory.get("/results/x/")
    request.user = AnonymousUser()
    assert results(request).status_code == 302


def test_home_sends_each_role_where_it_works(rater_client):
    from django.test import Client

    campaign = build_campaign(n_prompts=1)
    rater = rater_client(campaign)
    assert rater.get("/")["Location"] == f"/rate/{campaign.slug}/"
    analyst = make_user("ana2")
    analyst.groups.add(Group.objects.get(name="analyst"))
    client = Client()
    client.force_login(analyst)
    page = client.get("/")
    assert page.status_code == 200 and f"/campaigns/{campaign.slug}/results/" in page.content.decode()
    boss = make_user("boss2", is_staff=True)
    client.force_login(boss)
    assert client.get("/")["Location"] == "/admin/"
    assert Client().get("/")["Location"] == "/login/"


def test_no_javascript_skip_button(rater_client):
    campaign = build_campaign(n_prompts=2, k=1)
    client = rater_client(campaign)
    page = client.get(f"/rate/{campaign.slug}/").content.decode()
    token = re.search(r'id="assignment" value="([^"]+)"', page).group(1)
    client.post(f"/rate/{campaign.slug}/vote", {"csrfmiddlewaretoken": client.csrf(), "assignment": token, "skip": "1"})
    page = client.get(f"/rate/{campaign.slug}/").content.decode()
    assert re.search(r'id="assignment" value="([^"]+)"', page).group(1) != token
    assert Vote.objects.count() == 0
