"""Abuse limits: per-client rate limits on invite joins and votes, body size caps, too-fast votes flagged."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.urls.resolvers import URLResolver
from django.utils import timezone

from comparisons import services
from comparisons.models import Assignment, Rater, Vote
from comparisons.results import campaign_analysis
from evalsite import ratelimit
from tests.comparisons.conftest import RaterClient
from tests.comparisons.factories import build_campaign

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counters(settings):
    # The test client runs in this process, so a private in-memory cache holds the counters: clearing it
    # cannot touch a shared Redis database (in CI the cache URL is the Celery broker's).
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "limits"}}
    cache.clear()
    yield
    cache.clear()


def _join(campaign, **extra):
    client = RaterClient(**extra)
    client.get(f"/join/{campaign.invite_token}")
    return client, client.post(f"/join/{campaign.invite_token}", {"csrfmiddlewaretoken": client.csrf()})


def test_invite_joins_are_rate_limited_per_client_ip(settings):
    settings.RATE_LIMITS = {"comparisons:join": "3/3600"}
    campaign = build_campaign(slug="joins")
    for _ in range(3):
        assert _join(campaign)[1].status_code == 302
    _, refused = _join(campaign)
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 3601
    assert "Slow down: too many requests" in refused.content.decode()
    assert Rater.objects.count() == 3  # the refused join made no rater
    # Another address is counted on its own; the welcome page (GET) is never limited.
    assert _join(campaign, REMOTE_ADDR="10.1.2.3")[1].status_code == 302
    assert RaterClient().get(f"/join/{campaign.invite_token}").status_code == 200


def test_forwarded_for_is_believed_only_behind_a_trusted_proxy(settings):
    settings.RATE_LIMITS = {"comparisons:join": "1/3600"}
    campaign = build_campaign(slug="proxy")
    # Not trusted: a client cannot dodge the limit by inventing X-Forwarded-For headers.
    assert _join(campaign, HTTP_X_FORWARDED_FOR="1.1.1.1")[1].status_code == 302
    assert _join(campaign, HTTP_X_FORWARDED_FOR="2.2.2.2")[1].status_code == 429
    # Trusted (behind the site's own proxy): each forwarded client address has its own budget.
    settings.RATE_LIMIT_TRUST_X_FORWARDED_FOR = True
    assert _join(campaign, HTTP_X_FORWARDED_FOR="3.3.3.3")[1].status_code == 302
    assert _join(campaign, HTTP_X_FORWARDED_FOR="9.9.9.9, 4.4.4.4")[1].status_code == 302
    assert _join(campaign, HTTP_X_FORWARDED_FOR="4.4.4.4")[1].status_code == 429


def test_votes_are_rate_limited_per_rater_and_the_refused_vote_is_not_recorded(settings, rater_client):
    settings.RATE_LIMITS = {"comparisons:api_vote": "2/60"}
    campaign = build_campaign(slug="votes", n_prompts=6)
    client = rater_client(campaign)
    for _ in range(2):
        token = client.next(campaign.slug).json()["assignment"]
        assert client.vote(token, "A").status_code == 201
    token = client.next(campaign.slug).json()["assignment"]
    refused = client.vote(token, "A")
    assert refused.status_code == 429
    assert "try again in" in refused.json()["error"]
    assert int(refused["Retry-After"]) >= 1
    assert Vote.objects.count() == 2
    assert Assignment.objects.get(token=token).status == Assignment.Status.LEASED  # still the rater's to vote on
    # Votes are counted per rater: another rater behind the same address still votes.
    neighbour = rater_client(campaign)
    assert neighbour.vote(neighbour.next(campaign.slug).json()["assignment"], "B").status_code == 201


def test_a_limited_post_resolves_its_url_once(settings, rater_client, monkeypatch):
    """The limit is named by the URL Django resolves for the view; resolving it again in the middleware cost
    every POST a second resolution."""
    settings.RATE_LIMITS = {"comparisons:api_vote": "1/60"}
    campaign = build_campaign(slug="resolved", n_prompts=3)
    client = rater_client(campaign)
    token = client.next(campaign.slug).json()["assignment"]
    resolved = []
    resolve = URLResolver.resolve

    def counting(self, path):
        if self.pattern.describe() == "'^/'":  # the root resolver: one call per resolution
            resolved.append(path)
        return resolve(self, path)

    monkeypatch.setattr(URLResolver, "resolve", counting)
    voted = client.vote(token, "A")
    assert voted.status_code == 201
    assert resolved == [f"/api/rate/{token}/vote"]
    assert client.vote(voted.json()["next"]["assignment"], "A").status_code == 429  # and it was counted


class Clock:
    """The rate limiter's clock, moved by the test: seconds since the epoch."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def test_votes_straddling_a_minute_boundary_are_counted_in_one_sliding_window(settings, rater_client, monkeypatch):
    settings.RATE_LIMITS = {"comparisons:api_vote": "30/60"}
    campaign = build_campaign(slug="straddle", n_prompts=40, k=1)
    client = rater_client(campaign)
    clock = Clock(1_800_000_000 - 1.0)  # one second before a clock minute ends
    monkeypatch.setattr(ratelimit, "time", clock)
    answers = []
    for _ in range(36):
        clock.now += 2.0 / 36  # 36 votes in two seconds, 18 on each side of the boundary
        answers.append(client.vote(client.next(campaign.slug).json()["assignment"], "A").status_code)
    assert answers.count(201) == 30 and answers[30:] == [429] * 6
    assert Vote.objects.count() == 30
    # A minute after the burst the window has slid past it.
    clock.now += 60
    assert client.vote(client.next(campaign.slug).json()["assignment"], "A").status_code == 201


def test_a_browser_alternating_invite_links_is_held_to_the_join_limit(settings):
    settings.RATE_LIMITS = {"comparisons:join": "2/3600"}
    campaigns = [build_campaign(slug="left"), build_campaign(slug="right")]
    browser = RaterClient()
    answers = []
    for i in range(10):
        token = campaigns[i % 2].invite_token
        browser.get(f"/join/{token}")
        answers.append(browser.post(f"/join/{token}", {"csrfmiddlewaretoken": browser.csrf()}).status_code)
    assert answers[:2] == [302, 302] and set(answers[2:]) == {429}
    assert Rater.objects.count() == 2


def test_limits_can_be_switched_off(settings):
    settings.RATE_LIMITS = {"comparisons:join": "0/60"}
    campaign = build_campaign(slug="nolimit")
    assert all(_join(campaign)[1].status_code == 302 for _ in range(5))


def test_oversized_api_body_is_refused_before_it_is_read(settings, rater_client):
    settings.API_MAX_BODY_BYTES = 1000
    campaign = build_campaign(slug="big")
    client = rater_client(campaign)
    token = client.next(campaign.slug).json()["assignment"]
    response = client.post_json(f"/api/rate/{token}/vote", {"choice": "A", "rationale": "x" * 5000})
    assert response.status_code == 413
    assert "at most 1000 bytes" in response.json()["error"]
    assert not Vote.objects.exists()
    assert client.vote(token, "A", "short").status_code == 201


def test_oversized_upload_is_refused(settings):
    from django.contrib.auth import get_user_model
    from django.test import Client

    settings.CHECKPOINT_UPLOAD_MAX_BYTES = 10_000
    admin = get_user_model().objects.create_superuser("root", "r@example.org", "pw-123456789")
    client = Client()
    client.force_login(admin)
    from django.core.files.uploadedfile import SimpleUploadedFile

    archive = SimpleUploadedFile("model.zip", b"PK" + b"\0" * 20_000, content_type="application/zip")
    response = client.post("/admin/generation/modelentry/add/", {"name": "huge", "checkpoint_file": archive})
    assert response.status_code == 413
    assert "at most 10000 bytes" in response.content.decode()
    from generation.models import ModelEntry

    assert not ModelEntry.objects.filter(name="huge").exists()


def _multipart_upload(size: int) -> tuple[bytes, str]:
    boundary = "----blindeval-test"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\nmade-up\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="big.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + b"x" * size
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.fixture
def upload_dir(settings, tmp_path):
    """Uploads of more than a kilobyte spool to this folder: the test can see whether any body was spooled."""
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    return tmp_path


def test_a_large_post_to_the_login_page_is_refused_before_it_is_read(settings, upload_dir, monkeypatch):
    from django.core.files import uploadedfile
    from django.test import Client

    settings.REQUEST_MAX_BODY_BYTES = 1_000_000
    spooled = []
    real = uploadedfile.TemporaryUploadedFile.__init__

    def recording(self, *args, **kwargs):  # notes every upload spooled to disk (deleted again at the end)
        real(self, *args, **kwargs)
        spooled.append(self.temporary_file_path())

    monkeypatch.setattr(uploadedfile.TemporaryUploadedFile, "__init__", recording)
    body, content_type = _multipart_upload(3_000_000)
    client = Client(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = "made-up-csrf-cookie-value-0123456789abcdef0"
    response = client.post("/login/", data=body, content_type=content_type)
    assert response.status_code == 413
    assert "at most 1000000 bytes" in response.content.decode()
    assert spooled == [] and list(upload_dir.iterdir()) == []
    # Under the cap the same form is read (and refused by the CSRF check, as any forged form).
    small, content_type = _multipart_upload(10_000)
    assert client.post("/login/", data=small, content_type=content_type).status_code == 403


def test_only_signed_in_staff_may_send_a_large_body_to_the_checkpoint_upload(settings, upload_dir):
    from django.test import Client

    settings.REQUEST_MAX_BODY_BYTES = 1_000_000
    settings.CHECKPOINT_UPLOAD_MAX_BYTES = 10_000_000
    body, content_type = _multipart_upload(3_000_000)
    url = "/admin/generation/modelentry/add/"
    assert Client().post(url, data=body, content_type=content_type).status_code == 413
    campaign = build_campaign(slug="uploader")
    rater = services.rater_create_from_invite(campaign=campaign)
    as_rater = Client()
    as_rater.force_login(rater.user)
    assert as_rater.post(url, data=body, content_type=content_type).status_code == 413
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_superuser("boss", "b@example.org", "pw-123456789")
    as_staff = Client()
    as_staff.force_login(staff)
    assert as_staff.post(url, data=body, content_type=content_type).status_code == 200  # the form, with errors


def test_a_chunked_body_without_a_length_is_refused(settings):
    from django.test import Client

    response = Client().post("/login/", data=b"", content_type="text/plain", HTTP_TRANSFER_ENCODING="chunked")
    assert response.status_code == 411


def test_too_fast_votes_are_recorded_but_flagged_and_excludable(settings, rater_client):
    settings.MIN_SECONDS_PER_VOTE = 3
    campaign = build_campaign(slug="fast", n_prompts=4, k=1)
    client = rater_client(campaign)
    rater = client.rater
    # A fast vote: straight after the pair was served.
    fast = client.next(campaign.slug).json()["assignment"]
    assert client.vote(fast, "A").status_code == 201
    # A considered vote: the pair was served 20 seconds ago, after the previous vote (a vote's time runs from
    # the later of the two).
    earlier = timezone.now() - timedelta(seconds=21)
    Assignment.objects.filter(token=fast).update(closed_at=earlier)
    Vote.objects.filter(assignment__token=fast).update(submitted_at=earlier)
    slow = services.assignment_next(rater=rater, campaign=campaign)
    Assignment.objects.filter(pk=slow.pk).update(created_at=slow.created_at - timedelta(seconds=20))
    assert client.vote(slow.token, "B").status_code == 201
    assert Vote.objects.count() == 2  # both recorded
    everything = campaign_analysis(campaign=campaign, n_boot=50)
    considered = campaign_analysis(campaign=campaign, n_boot=50, exclude_flagged=True)
    assert everything["votes"]["used"] == 2
    assert considered["votes"]["used"] == 1 and considered["votes"]["excluded"] == 1
    # The threshold is a setting: at 0 nothing is too fast.
    settings.MIN_SECONDS_PER_VOTE = 0
    assert campaign_analysis(campaign=campaign, n_boot=50, exclude_flagged=True)["votes"]["used"] == 2
