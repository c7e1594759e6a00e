"""The results page in a real browser (headless Chromium via Playwright): figures drawn, nothing blocked.

The screenshots land in test-artifacts/results-page.png and results-page-adaptive.png.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.test import Client

from comparisons import services
from tests.browser import ARTIFACTS, BROWSER_TEST_MARKS, chromium_page
from tests.comparisons.factories import build_campaign, invite_rater, make_user
from tests.comparisons.test_results import PLAN, vote_as_planned

pytestmark = BROWSER_TEST_MARKS


def look_at_results(base_url: str, session_id: str, slug: str, screenshot: str = "results-page.png") -> dict:
    """Only the browser here: no ORM calls inside Playwright's event loop."""
    seen: dict = {"errors": []}
    session = [{"name": settings.SESSION_COOKIE_NAME, "value": session_id, "url": base_url}]
    with chromium_page(seen, width=1200, cookies=session, console=True) as page:
        response = page.goto(f"{base_url}/campaigns/{slug}/results/")
        seen["status"] = response.status if response else None
        seen["headline"] = page.locator(".headlines li").first.inner_text()
        seen["figures"] = [box["width"] for box in (svg.bounding_box() for svg in page.locator("figure svg").all())]
        seen["styled"] = page.locator(".headlines li").first.evaluate("e => getComputedStyle(e).borderLeftStyle")
        seen["headers"] = page.locator("th").all_inner_texts()
        seen["subheadings"] = page.locator("h3").all_inner_texts()
        page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
    return seen


def test_results_page_renders_in_chromium(live_server):
    campaign = build_campaign(slug="browser-results", n_prompts=6, k=1)
    vote_as_planned(campaign, invite_rater(campaign), PLAN)
    analyst = make_user("browser-analyst")
    services.user_make_analyst(user=analyst)
    client = Client()
    client.force_login(analyst)

    seen = look_at_results(live_server.url, client.cookies[settings.SESSION_COOKIE_NAME].value, campaign.slug)

    assert seen["status"] == 200
    assert seen["errors"] == []  # no CSP violation, no missing stylesheet
    assert seen["headline"].startswith("Model quokka-llm-13b wins 25.0% of comparisons against zebra-model-7")
    assert len(seen["figures"]) == 2 and all(width > 200 for width in seen["figures"])
    assert seen["styled"] == "solid"


def test_an_adaptive_campaigns_page_shows_the_routing_weighted_figures_in_chromium(live_server):
    cache.clear()
    campaign = build_campaign(
        slug="browser-adaptive", n_prompts=20, k=2, model_names=["m-north", "m-south", "m-west"], routing="adaptive"
    )
    for _ in range(3):
        rater = invite_rater(campaign)
        while (assignment := services.assignment_next(rater=rater, campaign=campaign)) is not None:
            services.vote_cast(rater=rater, token=assignment.token, choice="A" if assignment.left_is_a else "B")
        cache.clear()
    analyst = make_user("browser-analyst")
    services.user_make_analyst(user=analyst)
    client = Client()
    client.force_login(analyst)

    seen = look_at_results(
        live_server.url, client.cookies[settings.SESSION_COOKIE_NAME].value, campaign.slug, "results-page-adaptive.png"
    )

    assert seen["status"] == 200 and seen["errors"] == []
    assert "routing-weighted %" in seen["headers"]
    assert "Ranking weighted by routing probability" in seen["subheadings"]
