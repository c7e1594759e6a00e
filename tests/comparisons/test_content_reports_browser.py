"""A real browser ticks "Response B is harmful" beside its vote: the report lands on the answer shown on the right,
and the checkboxes are cleared for the next pair."""

from __future__ import annotations

from comparisons.models import Assignment, ContentReport, Vote
from tests.browser import BROWSER_TEST_MARKS, chromium_page, join_by_invite
from tests.comparisons.factories import build_campaign
from tests.comparisons.test_content_reports import shown

pytestmark = BROWSER_TEST_MARKS


def report_in_the_browser(base_url: str, invite_token: str, slug: str) -> dict:
    """Open *Report an answer*, tick "Response B is harmful", vote A; then vote on the next pair without a report.
    No database access in here (Playwright's event loop runs in this thread)."""
    from playwright.sync_api import expect

    seen: dict = {"errors": []}
    with chromium_page(seen) as page:
        join_by_invite(page, base_url, invite_token, slug)
        seen["first"] = page.locator("#assignment").input_value()
        page.get_by_text("Report an answer").click()
        page.locator('input[value="B:harmful"]').check()
        page.get_by_role("button", name="A is better").click()
        expect(page.locator("#progress")).to_have_attribute("aria-valuenow", "1")
        seen["cleared"] = not page.locator('input[value="B:harmful"]').is_checked()
        seen["second"] = page.locator("#assignment").input_value()
        page.get_by_role("button", name="B is better").click()
        page.wait_for_url(f"**/rate/{slug}/done")
    return seen


def test_a_rater_reports_an_answer_beside_the_vote_in_the_browser(live_server):
    campaign = build_campaign(n_prompts=2, k=1)
    seen = report_in_the_browser(live_server.url, campaign.invite_token, campaign.slug)
    assert seen["errors"] == [] and seen["cleared"]
    first = Assignment.objects.select_related("comparison").get(token=seen["first"])
    report = ContentReport.objects.get()  # one report: the second vote sent none
    assert report.vote.assignment == first and report.kind == "harmful" and report.response == shown(first, "B")
    assert Vote.objects.get(assignment__token=seen["second"]).content_reports.count() == 0
