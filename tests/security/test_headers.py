"""Security headers, session cookies, token strength and `check --deploy` under production settings."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from comparisons import services
from comparisons.models import Assignment, Campaign, new_token
from tests.comparisons.factories import build_campaign, invite_rater

ROOT = Path(__file__).resolve().parents[2]


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS"}}
    env.update(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="rate.example.org",
        CSRF_TRUSTED_ORIGINS="https://rate.example.org",
        BLINDEVAL_VAR_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="evalsite.settings",
    )
    env.update(extra)
    return env


def test_check_deploy_is_clean_under_production_settings(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_secure_the_cookies(tmp_path):
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, "
        "s.SESSION_COOKIE_SAMESITE, s.SECURE_HSTS_SECONDS > 0, s.SECURE_SSL_REDIRECT)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=production_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "True", "Lax", "True", "True"]


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    env = production_env(tmp_path)
    env.pop("SECRET_KEY")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


@pytest.mark.django_db
def test_security_headers_on_pages_and_api(rater_client):
    campaign = build_campaign(slug="hdr")
    client = rater_client(campaign)
    answers = [
        client.get(f"/rate/{campaign.slug}/"),
        client.get(f"/api/rate/next?campaign={campaign.slug}"),
        Client().get("/login/"),
        Client().get("/admin/login/"),
        Client().get("/healthz"),
    ]
    for response in answers:
        csp = response["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
        assert directives["script-src"] == "'self'", csp  # no inline script, no eval, no other origin
        assert directives["frame-ancestors"] == "'none'"
        assert directives["object-src"] == "'none'"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
        assert response["X-Frame-Options"] == "DENY"


@pytest.mark.django_db
def test_rater_pages_carry_no_inline_script(rater_client):
    """CSP forbids inline script, so the rater page must not rely on any: every <script> has a src."""
    campaign = build_campaign(slug="inline")
    page = rater_client(campaign).get(f"/rate/{campaign.slug}/").content.decode()
    import re

    for tag in re.findall(r"<script\b[^>]*>", page):
        assert "src=" in tag, tag
    assert " onclick=" not in page and " onload=" not in page


@pytest.mark.django_db
def test_session_cookie_is_httponly_and_samesite(rater_client):
    campaign = build_campaign(slug="cookie")
    client = rater_client(campaign)
    cookie = client.cookies["sessionid"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"


def test_tokens_have_at_least_128_bits():
    tokens = {new_token() for _ in range(2000)}
    assert len(tokens) == 2000
    for token in list(tokens)[:200]:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        assert len(raw) * 8 >= 128


@pytest.mark.django_db
def test_stored_tokens_come_from_the_strong_generator():
    campaign = build_campaign(slug="tokens")
    rater = invite_rater(campaign)
    assignment = services.assignment_next(rater=rater, campaign=campaign)
    assert Campaign._meta.get_field("invite_token").default is new_token
    assert Assignment._meta.get_field("token").default is new_token
    for token in (campaign.invite_token, assignment.token):
        assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) >= 16
    # The rotated invite is fresh, and the old link stops working.
    old = campaign.invite_token
    services.campaign_rotate_invite(campaign=campaign)
    assert campaign.invite_token != old
    assert Client().get(f"/join/{old}").status_code == 404


@pytest.mark.django_db
def test_healthz_answers_anonymously_and_reveals_nothing():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"].startswith("max-age=0")
    assert Client().post("/healthz").status_code in (403, 405)  # read-only
