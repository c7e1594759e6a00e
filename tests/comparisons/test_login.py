"""Signing in at /login/ lands each role where it works, never on a 404."""

from __future__ import annotations

import pytest
from django.test import Client

from comparisons import services
from tests.comparisons.factories import build_campaign, make_user

pytestmark = pytest.mark.django_db

PASSWORD = "pw-123456789"


def sign_in(username: str):
    client = Client()
    response = client.post("/login/", {"username": username, "password": PASSWORD}, follow=True)
    assert response.status_code == 200, response.redirect_chain
    return response


def test_a_named_rater_lands_on_the_list_of_their_studies():
    campaign = build_campaign(slug="their-study")
    services.rater_create_named(username="rita", password=PASSWORD, campaigns=[campaign])
    page = sign_in("rita")
    assert page.redirect_chain[0][0] == "/"
    html = page.content.decode()
    assert "Your studies" in html and f"/rate/{campaign.slug}/" in html


def test_an_analyst_lands_on_the_results_list():
    campaign = build_campaign(slug="results-here")
    services.user_make_analyst(user=make_user("ana"))
    html = sign_in("ana").content.decode()
    assert "Campaign results" in html and f"/campaigns/{campaign.slug}/results/" in html


def test_staff_land_on_the_admin():
    make_user("boss", is_staff=True, is_superuser=True)
    page = sign_in("boss")
    assert page.redirect_chain[-1][0] == "/admin/"
    assert page.request["PATH_INFO"] == "/admin/"
