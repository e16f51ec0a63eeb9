"""A real browser for the dashboard tests: the distribution's headless Chromium driven by Playwright.

Playwright's own browser download cannot work here, so it is pointed at
``/usr/bin/chromium`` (``apt-get install chromium chromium-driver``; ``.ci/run``
installs it when missing). A missing browser fails the tests, never skips them.
Every request to a host other than 127.0.0.1 is aborted and recorded, so a page
that needs the internet shows up as a failure. Screenshots go to ``build/ui/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, Route, expect, sync_playwright

CHROMIUM = os.environ.get("AGENTKEEP_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "ui"
TIMEOUT_MS = 20_000
# Assertions wait as long as actions: a loaded machine can take seconds to parse Swagger UI.
expect.set_options(timeout=TIMEOUT_MS)
_LOCAL = re.compile(r"^(https?|wss?)://127\.0\.0\.1(:\d+)?/")


@contextmanager
def chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: apt-get install -y chromium chromium-driver "
            "(the dashboard's browser tests never skip)",
            pytrace=False,
        )
    playwright: Playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Tab:
    """One browser context (its own cookies) on a live service."""

    def __init__(self, browser: Browser, base_url: str, backend: str) -> None:
        self.context = browser.new_context(
            base_url=base_url, viewport={"width": 1280, "height": 900}
        )
        self.context.set_default_timeout(TIMEOUT_MS)
        self.backend = backend
        self.external: list[str] = []
        self.context.route("**/*", self._guard)
        self.page: Page = self.context.new_page()

    def _guard(self, route: Route) -> None:
        url = route.request.url
        if _LOCAL.match(url) or url.startswith("data:"):
            route.continue_()
        else:
            self.external.append(url)
            route.abort()

    def sign_in(self, key: str, path: str = "/ui/sessions") -> Page:
        page = self.page
        page.goto(path)
        page.wait_for_url("**/ui/login**")
        page.fill("input[name=key]", key)
        page.click("#login-form button[type=submit]")
        page.wait_for_url(f"**{path.split('?')[0]}**")
        return page

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.backend}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.context.close()
        assert self.external == [], f"pages asked the internet for {self.external}"
