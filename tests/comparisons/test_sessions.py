"""Sessions in the database with their user as a column (comparisons.sessions): a request reads its session, user
and rater in one statement; what it read serves that request only; no outage when Redis is down; sessions of
Django's own table carry over."""

from __future__ import annotations

from datetime import timedelta
from importlib import import_module

import pytest
from django.apps import apps
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user
from django.contrib.sessions.backends.db import SessionStore as DjangoSessionStore
from django.contrib.sessions.models import Session as DjangoSession
from django.core.management import call_command
from django.core.signals import request_finished
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from comparisons.backends import RaterModelBackend, forget_signed_in
from comparisons.models import Session
from comparisons.sessions import SessionStore
from tests.comparisons.conftest import UNREACHABLE_REDIS_CACHE
from tests.comparisons.factories import build_campaign, invite_rater

pytestmark = pytest.mark.django_db


def signed_in(store, user) -> None:
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "comparisons.backends.RaterModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()


def request_of(session_key: str):
    request = RequestFactory().get("/")
    request.session = SessionStore(session_key)
    return request


def test_a_request_reads_its_session_user_and_rater_in_one_statement():
    rater = invite_rater(build_campaign())
    store = SessionStore()
    signed_in(store, rater.user)
    assert Session.objects.get(pk=store.session_key).user_id == rater.user_id  # the row names its user
    request = request_of(store.session_key)
    with CaptureQueriesContext(connection) as queries:
        user = get_user(request)
        assert user.pk == rater.user_id and user.rater.pk == rater.pk
    assert len(queries) == 1


def test_the_user_read_with_a_session_serves_that_request_only():
    campaign = build_campaign()
    first, second = invite_rater(campaign), invite_rater(campaign)
    store = SessionStore()
    signed_in(store, first.user)
    SessionStore(store.session_key).load()
    backend = RaterModelBackend()
    with CaptureQueriesContext(connection) as queries:
        assert backend.get_user(second.user_id).rater.pk == second.pk  # another id: read for itself
    assert len(queries) == 1
    SessionStore(store.session_key).load()
    # The request ends before anything asked for its user (the signal's other receivers close the connection).
    assert any(key[0] == "comparisons.forget_signed_in" for key, *_ in request_finished.receivers)
    forget_signed_in()
    with CaptureQueriesContext(connection) as queries:
        assert backend.get_user(first.user_id).pk == first.user_id
    assert len(queries) == 1


def test_a_deactivated_user_or_an_expired_session_signs_nobody_in():
    rater = invite_rater(build_campaign())
    store = SessionStore()
    signed_in(store, rater.user)
    type(rater.user).objects.filter(pk=rater.user_id).update(is_active=False)
    assert not get_user(request_of(store.session_key)).is_authenticated
    type(rater.user).objects.filter(pk=rater.user_id).update(is_active=True)
    assert get_user(request_of(store.session_key)).is_authenticated
    Session.objects.filter(pk=store.session_key).update(expire_date=timezone.now())
    assert not get_user(request_of(store.session_key)).is_authenticated


def test_an_anonymous_session_names_no_user_and_a_signed_in_one_follows_its_logout(rater_client):
    store = SessionStore()
    store["seen"] = True
    store.save()
    assert Session.objects.get(pk=store.session_key).user_id is None
    assert SessionStore(store.session_key)["seen"] is True
    campaign = build_campaign()
    client = rater_client(campaign)
    key = client.cookies["sessionid"].value
    assert Session.objects.get(pk=key).user_id == client.rater.user_id
    assert client.post("/logout/", headers={"X-CSRFToken": client.csrf()}).status_code in (200, 302)
    assert not Session.objects.filter(pk=key).exists()


def test_raters_keep_joining_and_rating_while_redis_is_unreachable(settings, rater_client, caplog):
    # Rate-limit counters live in the cache, sessions do not: with it down, a new rater still joins, rates, and
    # is not refused by a limit that cannot count.
    settings.CACHES = {"default": UNREACHABLE_REDIS_CACHE}
    settings.RATE_LIMITS = {"comparisons:api_vote": "1/60", "comparisons:join": "1/3600"}
    campaign = build_campaign(n_prompts=4, k=2)
    client = rater_client(campaign)
    for _ in range(2):
        pair = client.next(campaign.slug)
        assert pair.status_code == 200, pair.content
        assert client.vote(pair.json()["assignment"], "A").status_code == 201
    assert Session.objects.count() == 1
    assert "Rate-limit cache unavailable" in caplog.text
    assert client.post("/logout/", headers={"X-CSRFToken": client.csrf()}).status_code in (200, 302)
    assert Session.objects.count() == 0


def test_raters_signed_in_before_the_auth_backend_moved_stay_signed_in(client, settings):
    # Migration 0009 ran on Django's own session table, before sessions moved (0016).
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    moved = import_module("comparisons.migrations.0009_sessions_of_the_moved_auth_backend")
    campaign = build_campaign(slug="long-running")
    rater = invite_rater(campaign)
    store = DjangoSessionStore()
    signed_in(store, rater.user)
    store[BACKEND_SESSION_KEY] = "comparisons.auth.RaterModelBackend"  # written before the upgrade
    store.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = store.session_key
    rate_page = f"/rate/{campaign.slug}/"
    assert client.get(rate_page).status_code == 302  # the old path is no backend any more: signed out

    moved.forwards(apps, None)
    assert client.get(rate_page).status_code == 200  # the same browser is the same rater again
    moved.backwards(apps, None)
    assert client.get(rate_page).status_code == 302


def test_sessions_of_djangos_table_carry_over_with_their_user(client, settings):
    moved = import_module("comparisons.migrations.0016_sessions_with_their_user")
    campaign = build_campaign(slug="ongoing")
    rater = invite_rater(campaign)
    before, anonymous, gone = DjangoSessionStore(), DjangoSessionStore(), DjangoSessionStore()
    signed_in(before, rater.user)
    anonymous["seen"] = True
    anonymous.save()
    signed_in(gone, invite_rater(campaign).user)
    DjangoSession.objects.filter(pk=gone.session_key).update(expire_date=timezone.now())
    assert SessionStore(before.session_key).load() == {}  # not in the new table yet

    moved.forwards(apps, None)
    client.cookies[settings.SESSION_COOKIE_NAME] = before.session_key
    rate_page = f"/rate/{campaign.slug}/"
    assert client.get(rate_page).status_code == 200  # the same browser is the same rater
    assert dict(Session.objects.values_list("session_key", "user_id")) == {
        before.session_key: rater.user_id,
        anonymous.session_key: None,
    }
    moved.forwards(apps, None)  # run twice: nothing copied twice
    assert Session.objects.count() == 2


def test_session_data_checked_once_is_read_again_as_a_new_dict_and_bad_data_is_refused_every_time(caplog):
    store = SessionStore()
    store["cart"] = {"pairs": [1, 2]}
    store.save()
    data = Session.objects.get(session_key=store.session_key).session_data
    first = SessionStore().decode(data)
    first["cart"]["pairs"].append(3)  # what one request changes in its session data stays its own
    again = SessionStore().decode(data)
    assert again == {"cart": {"pairs": [1, 2]}} and again is not first
    tampered = data[:-3] + ("AAA" if not data.endswith("AAA") else "BBB")
    for _ in range(2):
        assert SessionStore().decode(tampered) == {}
    assert caplog.text.count("Session data corrupted") == 2


def test_clearsessions_deletes_the_expired_sessions_of_this_table_and_keeps_live_ones():
    live, expired = SessionStore(), SessionStore()
    live["n"], expired["n"] = 1, 2
    live.save()
    expired.set_expiry(1)
    expired.save()
    Session.objects.filter(session_key=expired.session_key).update(expire_date=timezone.now() - timedelta(days=1))
    call_command("clearsessions")
    assert list(Session.objects.values_list("session_key", flat=True)) == [live.session_key]
