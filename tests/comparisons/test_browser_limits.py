"""A rater voting faster than the vote limit sees "slow down" beside the buttons, in a real browser."""

from __future__ import annotations

from django.core.cache import cache

from comparisons.models import Vote
from tests.browser import ARTIFACTS, BROWSER_TEST_MARKS, chromium_page, join_by_invite
from tests.comparisons.factories import build_campaign

pytestmark = BROWSER_TEST_MARKS


def vote_twice_quickly(base_url: str, invite_token: str, slug: str) -> dict:
    from playwright.sync_api import expect

    seen: dict = {"errors": []}
    with chromium_page(seen, height=800) as page:
        join_by_invite(page, base_url, invite_token, slug)
        bar = page.locator("#progress")
        page.keyboard.press("1")
        expect(bar).to_have_attribute("aria-valuenow", "1")
        page.keyboard.press("3")  # over the limit: refused with 429
        status = page.locator("#status")
        expect(status).to_contain_text("Slow down")
        seen["status"] = status.inner_text()
        buttons = page.get_by_role("group", name="Your judgement")
        buttons.scroll_into_view_if_needed()
        seen["status_box"], seen["buttons_box"] = status.bounding_box(), buttons.bounding_box()
        seen["progress"] = bar.get_attribute("aria-valuenow")
        page.screenshot(path=str(ARTIFACTS / "rater-page-slow-down.png"))
    return seen


def test_a_rater_over_the_vote_limit_is_told_to_slow_down_next_to_the_buttons(live_server, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "slow"}}
    settings.RATE_LIMITS = {"comparisons:api_vote": "1/60"}
    cache.clear()
    campaign = build_campaign(n_prompts=3, k=1)

    seen = vote_twice_quickly(live_server.url, campaign.invite_token, campaign.slug)

    assert seen["errors"] == []
    assert "Slow down" in seen["status"] and "Could not reach the server" not in seen["status"]
    assert "wait" in seen["status"] and "second" in seen["status"]
    # Right above the vote buttons, not below the fold under the form.
    status, buttons = seen["status_box"], seen["buttons_box"]
    assert 0 <= buttons["y"] - (status["y"] + status["height"]) < 40, (status, buttons)
    assert seen["progress"] == "1"
    assert Vote.objects.count() == 1
