"""Sessions from the shared cache, kept in the database (evalsite.sessions): fast reads, no outage when Redis is down.

The rater loop reads the session on every request; with Redis configured it comes from the
cache. These tests run the store with the suite's own cache (Redis on CI's server pass, the file
cache on the embedded pass) and with a cache whose Redis server cannot be reached.
"""

from __future__ import annotations

import pytest
from django.contrib.sessions.models import Session
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext

from evalsite.sessions import SessionStore
from tests.comparisons.conftest import UNREACHABLE_REDIS_CACHE
from tests.comparisons.factories import build_campaign, invite_rater

pytestmark = pytest.mark.django_db


@pytest.fixture
def cached_sessions(settings):
    settings.SESSION_ENGINE = "evalsite.sessions"
    return settings


def test_a_saved_session_is_read_from_the_cache_without_a_query(cached_sessions):
    store = SessionStore()
    store["rater"] = 42
    store.save()
    with CaptureQueriesContext(connection) as queries:
        assert SessionStore(store.session_key)["rater"] == 42
    assert len(queries) == 0
    # The database holds the same session: it survives a cache that lost it.
    assert Session.objects.filter(session_key=store.session_key).exists()


def test_a_session_missing_from_the_cache_is_read_from_the_database_and_cached_again(cached_sessions):
    store = SessionStore()
    store["rater"] = 7
    store.save()
    caches[cached_sessions.SESSION_CACHE_ALIAS].delete(store.cache_key)
    with CaptureQueriesContext(connection) as first:
        assert SessionStore(store.session_key)["rater"] == 7
    assert len(first) == 1
    with CaptureQueriesContext(connection) as second:
        assert SessionStore(store.session_key)["rater"] == 7
    assert len(second) == 0


def test_raters_keep_joining_and_rating_while_redis_is_unreachable(cached_sessions, rater_client, caplog):
    # Sessions and rate-limit counters both live in the cache: with it down, a new rater still joins (the
    # session is written to the database), rates, and is not refused by a limit that cannot count.
    cached_sessions.CACHES = {"default": UNREACHABLE_REDIS_CACHE}
    cached_sessions.RATE_LIMITS = {"comparisons:api_vote": "1/60", "comparisons:join": "1/3600"}
    campaign = build_campaign(n_prompts=4, k=2)
    client = rater_client(campaign)
    for _ in range(2):
        pair = client.next(campaign.slug)
        assert pair.status_code == 200, pair.content
        assert client.vote(pair.json()["assignment"], "A").status_code == 201
    assert Session.objects.count() == 1
    assert "Session cache unavailable" in caplog.text
    assert "Rate-limit cache unavailable" in caplog.text
    # Signing out works too, and ends the session in the database.
    assert client.post("/logout/", headers={"X-CSRFToken": client.csrf()}).status_code in (200, 302)
    assert Session.objects.count() == 0


def test_raters_signed_in_before_the_auth_backend_moved_stay_signed_in(client, settings):
    from importlib import import_module

    from django.apps import apps
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    moved = import_module("comparisons.migrations.0009_sessions_of_the_moved_auth_backend")
    campaign = build_campaign(slug="long-running")
    rater = invite_rater(campaign)
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(rater.user.pk)
    store[BACKEND_SESSION_KEY] = "comparisons.auth.RaterModelBackend"  # written before the upgrade
    store[HASH_SESSION_KEY] = rater.user.get_session_auth_hash()
    store.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = store.session_key
    rate_page = f"/rate/{campaign.slug}/"
    assert client.get(rate_page).status_code == 302  # the old path is no backend any more: signed out

    moved.forwards(apps, None)
    assert client.get(rate_page).status_code == 200  # the same browser is the same rater again
    moved.backwards(apps, None)
    assert client.get(rate_page).status_code == 302
