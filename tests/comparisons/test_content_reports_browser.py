"""A real browser ticks "Response B is harmful" beside its vote: the report lands on the answer shown on the right,
and the checkboxes are cleared for the next pair."""

from __future__ import annotations

from comparisons.models import Assignment, ContentReport, Vote
from tests.browser import BROWSER_TEST_MARKS, CHROMIUM, LAUNCH_ARGS
from tests.comparisons.factories import build_campaign
from tests.comparisons.test_content_reports import shown

pytestmark = BROWSER_TEST_MARKS


def report_in_the_browser(base_url: str, invite_token: str, slug: str) -> dict:
    """Open *Report an answer*, tick "Response B is harmful", vote A; then vote on the next pair without a report.
    No database access in here (Playwright's event loop runs in this thread)."""
    from playwright.sync_api import expect, sync_playwright

    seen: dict = {"errors": []}
    expect.set_options(timeout=20_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda exc: seen["errors"].append(str(exc)))
        page.goto(f"{base_url}/join/{invite_token}")
        page.get_by_role("button", name="Start rating").click()
        page.wait_for_url(f"**/rate/{slug}/")
        seen["first"] = page.locator("#assignment").input_value()
        page.get_by_text("Report an answer").click()
        page.locator('input[value="B:harmful"]').check()
        page.get_by_role("button", name="A is better").click()
        expect(page.locator("#progress")).to_have_attribute("aria-valuenow", "1")
        seen["cleared"] = not page.locator('input[value="B:harmful"]').is_checked()
        seen["second"] = page.locator("#assignment").input_value()
        page.get_by_role("button", name="B is better").click()
        page.wait_for_url(f"**/rate/{slug}/done")
        browser.close()
    return seen


def test_a_rater_reports_an_answer_beside_the_vote_in_the_browser(live_server):
    campaign = build_campaign(n_prompts=2, k=1)
    seen = report_in_the_browser(live_server.url, campaign.invite_token, campaign.slug)
    assert seen["errors"] == [] and seen["cleared"]
    first = Assignment.objects.select_related("comparison").get(token=seen["first"])
    report = ContentReport.objects.get()  # one report: the second vote sent none
    assert report.vote.assignment == first and report.kind == "harmful" and report.response == shown(first, "B")
    assert Vote.objects.get(assignment__token=seen["second"]).content_reports.count() == 0
