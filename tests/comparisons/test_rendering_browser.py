"""The rater page in a real browser (headless Chromium), desktop and phone widths: headings inside answers no larger
than the "Response A/B" labels, code without fences keeps its indentation, and each response's raw text (the
canonical served text) is one click away. Screenshots land in test-artifacts/."""

from __future__ import annotations

from comparisons.served_text import served_text
from tests.browser import ARTIFACTS, BROWSER_TEST_MARKS, chromium_page, join_by_invite
from tests.comparisons.factories import build_campaign
from tests.comparisons.test_markdown import UNFENCED_PYTHON
from tests.comparisons.test_rendering import HEADINGS, set_texts

pytestmark = BROWSER_TEST_MARKS


def look_in_the_browser(base_url: str, invite_token: str, slug: str) -> dict:
    """Open the rater page at desktop and phone widths; measure heading sizes; show and hide the raw text."""
    seen: dict = {"errors": []}
    with chromium_page(seen) as page:
        join_by_invite(page, base_url, invite_token, slug)

        def font_size(selector: str) -> float:
            return float(page.locator(selector).first.evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))

        for width, name in ((1280, "desktop"), (390, "phone")):
            page.set_viewport_size({"width": width, "height": 900})
            side = "a" if page.locator("#response-a h1").count() else "b"
            seen[f"{name}_label"] = font_size(f"#response-{side}-heading")
            seen[f"{name}_h1"] = font_size(f"#response-{side} h1")
            page.screenshot(path=str(ARTIFACTS / f"rendering-{name}.png"), full_page=True)
        code_side = "b" if side == "a" else "a"
        seen["code_block"] = page.locator(f"#response-{code_side} pre code").inner_text()
        seen["raw_visible_before"] = page.locator(f"#raw-{side}").is_visible()
        page.locator(f"#raw-toggle-{side} summary").click()
        seen["raw_text"] = page.locator(f"#raw-{side}").inner_text()
        seen["formatted_hidden_when_raw"] = not page.locator(f"#response-{side}").is_visible()
        page.screenshot(path=str(ARTIFACTS / "rendering-phone-raw.png"), full_page=True)
        seen["headings_side"] = side
        # After a vote the next pair comes through the API: its raw text is filled in and the toggle closed.
        page.locator("button[value=tie]").click()
        page.locator("#progress[aria-valuenow='1']").wait_for(state="attached")
        seen["raw_open_after_next"] = page.locator(f"#raw-toggle-{side}").evaluate("e => e.open")
        seen["raw_after_next"] = {s: page.locator(f"#raw-{s}").text_content() for s in "ab"}
    return seen


def test_headings_stay_small_code_keeps_its_indentation_and_raw_text_is_one_click_away(live_server):
    campaign = build_campaign(n_prompts=2, k=1)
    set_texts(campaign, HEADINGS, UNFENCED_PYTHON)
    seen = look_in_the_browser(live_server.url, campaign.invite_token, campaign.slug)
    assert seen["errors"] == []
    for name in ("desktop", "phone"):
        assert seen[f"{name}_h1"] <= seen[f"{name}_label"], seen
    assert "    if n == 0:\n        return False" in seen["code_block"] and "# Driver Code" in seen["code_block"]
    assert seen["raw_visible_before"] is False
    assert seen["raw_text"] == served_text(HEADINGS) == "# A very big heading\n\n## Another one\n\nSome text."
    assert seen["formatted_hidden_when_raw"]
    assert seen["raw_open_after_next"] is False
    assert sorted(seen["raw_after_next"].values()) == sorted([served_text(HEADINGS), served_text(UNFENCED_PYTHON)])
