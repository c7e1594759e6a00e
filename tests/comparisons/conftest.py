"""Fixtures for rating tests: browsers-as-clients that joined a campaign through its invite link."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from comparisons.models import Campaign, Rater

# A Redis nothing listens on (port 1 is reserved): every cache call fails at once with a connection error.
UNREACHABLE_REDIS_CACHE = {
    "BACKEND": "django.core.cache.backends.redis.RedisCache",
    "LOCATION": "redis://127.0.0.1:1/0",
}


class RaterClient(Client):
    """A Django test client that enforces CSRF like a browser and speaks the rating API."""

    def __init__(self, **kwargs):
        super().__init__(enforce_csrf_checks=True, **kwargs)

    def csrf(self) -> str:
        if "csrftoken" not in self.cookies:
            self.get("/login/")
        return self.cookies["csrftoken"].value

    def join(self, campaign: Campaign, query: str = ""):
        self.get(f"/join/{campaign.invite_token}{query}")
        return self.post(f"/join/{campaign.invite_token}{query}", {"csrfmiddlewaretoken": self.csrf()})

    @property
    def rater(self) -> Rater:
        return Rater.objects.get(user_id=int(self.session["_auth_user_id"]))

    def next(self, slug: str, **params):
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return self.get(f"/api/rate/next?campaign={slug}" + (f"&{query}" if query else ""))

    def post_json(self, url: str, body, *, raw: bytes | None = None):
        data = raw if raw is not None else json.dumps(body)
        return self.post(url, data=data, content_type="application/json", headers={"X-CSRFToken": self.csrf()})

    def vote(self, token: str, choice: str, rationale: str = ""):
        return self.post_json(f"/api/rate/{token}/vote", {"choice": choice, "rationale": rationale})

    def skip(self, token: str):
        return self.post_json(f"/api/rate/{token}/skip", {})


@pytest.fixture
def rater_client():
    """Factory: a fresh browser that has joined `campaign` by its invite link."""

    def make(campaign: Campaign, query: str = "") -> RaterClient:
        client = RaterClient()
        response = client.join(campaign, query)
        assert response.status_code == 302, response.content
        return client

    return make
