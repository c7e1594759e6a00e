"""A real browser (Debian's headless Chromium driven by Playwright) joins by invite link and votes by keyboard.

Screenshots land in test-artifacts/ (the rater page wide and narrow, and the end page).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from comparisons.models import Comparison, Rater, Vote
from tests.browser import ARTIFACTS, BROWSER_TEST_MARKS, chromium_page
from tests.comparisons.factories import build_campaign

pytestmark = BROWSER_TEST_MARKS

RICH_ANSWER = """Here is a plan:

1. **Measure** the baseline.
2. Change *one* thing.

| step | time |
|------|-----:|
| measure | 5 min |
| change | 10 min |

```python
def speedup(before, after):
    return before / after
```
"""


def rate_in_the_browser(base_url: str, invite_token: str, slug: str) -> dict:
    """Everything the browser does, with no database access (see `tests.browser.chromium_page`)."""
    from playwright.sync_api import expect

    seen: dict = {"errors": [], "api": []}
    with chromium_page(seen, console=True) as page:
        page.on(
            "request",
            lambda request: (
                seen["api"].append((request.method, urlsplit(request.url).path.rsplit("/", 1)[-1]))
                if "/api/" in request.url
                else None
            ),
        )

        page.goto(f"{base_url}/join/{invite_token}?PROLIFIC_PID=browser-1")
        expect(page.get_by_role("button", name="Start rating")).to_be_focused()  # autofocus
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/rate/{slug}/")
        bar = page.locator("#progress")
        seen["start"] = (bar.get_attribute("aria-valuenow"), bar.get_attribute("aria-valuemax"))
        page.screenshot(path=str(ARTIFACTS / "rater-page-wide.png"), full_page=True)
        page.set_viewport_size({"width": 420, "height": 900})
        page.screenshot(path=str(ARTIFACTS / "rater-page-narrow.png"), full_page=True)
        page.set_viewport_size({"width": 1280, "height": 900})

        token = page.locator("#assignment").input_value()
        page.keyboard.press("1")  # A is better
        expect(bar).to_have_attribute("aria-valuenow", "1")
        seen["token_changed"] = page.locator("#assignment").input_value() != token  # no reload needed
        seen["status"] = page.locator("#status").inner_text()

        # Typing in the rationale must not trigger the shortcuts ("b", "t", "a" and "x" are shortcut keys).
        page.locator("#rationale").click()
        page.keyboard.type("b is tidy and exact")
        page.wait_for_timeout(300)
        seen["after_typing"] = bar.get_attribute("aria-valuenow")
        page.keyboard.press("Tab")  # focus leaves the text box for the first vote button
        page.keyboard.press("3")  # B is better
        expect(bar).to_have_attribute("aria-valuenow", "2")

        page.keyboard.press("x")  # both are bad: the last pair, then the end page
        page.wait_for_url(f"**/rate/{slug}/done")
        page.screenshot(path=str(ARTIFACTS / "rater-end-page.png"), full_page=True)
        seen["code"] = page.locator("#completion-code").inner_text()
    return seen


def test_join_vote_with_the_keyboard_and_reach_the_end_page(live_server):
    campaign = build_campaign(n_prompts=3, k=1, instructions="Prefer the answer that follows the instruction.")
    first = Comparison.objects.filter(campaign=campaign).order_by("pk").first()
    first.response_a.text = RICH_ANSWER
    first.response_a.save()

    seen = rate_in_the_browser(live_server.url, campaign.invite_token, campaign.slug)

    assert seen["errors"] == []
    assert seen["start"] == ("0", "3")
    assert seen["token_changed"] and "Vote saved" in seen["status"]
    assert seen["after_typing"] == "1"
    # One request per vote: each vote's answer carried the next pair (the last one: none, so the end page).
    assert seen["api"] == [("POST", "vote")] * 3
    rater = Rater.objects.get(participant_id="browser-1")
    assert seen["code"] == rater.completion_code
    choices = sorted(Vote.objects.filter(assignment__rater=rater).values_list("choice", "rationale"))
    assert choices == [("both_bad", ""), ("left", ""), ("right", "b is tidy and exact")]
