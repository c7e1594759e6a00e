"""What the browser tests share: Debian's headless Chromium, its flags, where screenshots go, their marks, a page
that collects its script errors, and joining a campaign by its invite link."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# This machine's network is closed: without the background-networking flags
# Chromium keeps trying to reach Google's hosts.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

BROWSER_TEST_MARKS = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    # CI installs chromium (.ci/run), so there a missing browser fails instead of skipping.
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and os.environ.get("CI", "").lower() != "true",
        reason="needs Debian's chromium package (.ci/run installs it)",
    ),
]


@contextmanager
def chromium_page(
    seen: dict, *, width: int = 1280, height: int = 900, cookies: list[dict] | None = None, console: bool = False
) -> Iterator[Any]:
    """A page of headless Chromium. Its script errors (with ``console``, its console errors too) are appended to
    ``seen["errors"]``. Playwright's sync API runs an event loop in this thread: ORM calls made inside it would
    open a connection of their own that is never closed, so a test reads the database before and after."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=20_000)  # the CI machine may be busy: wait longer than the default 5 s
    errors = seen.setdefault("errors", [])
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            if cookies:
                context.add_cookies(cookies)
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            if console:
                page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            yield page
        finally:
            browser.close()


def join_by_invite(page: Any, base_url: str, invite_token: str, slug: str) -> None:
    """Open the campaign's invite link, press *Start rating* and wait for the rater page."""
    page.goto(f"{base_url}/join/{invite_token}")
    page.get_by_role("button", name="Start rating").click()
    page.wait_for_url(f"**/rate/{slug}/")
