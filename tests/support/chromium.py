"""Headless Chromium for the console's browser tests: the system's browser driven by Playwright.

``chromium`` launches ``/usr/bin/chromium`` (never a downloaded browser) and fails the test when it
or Playwright is missing (``component_missing``). ``csp_refusals`` collects what a page's console
says the Content Security Policy blocked; ``overflow`` measures how far a page is wider than its
window; ``sign_in_at_provider`` fills the test provider's sign-in form.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from support import component_missing
from support.oidcprovider import ACCOUNTS

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched headless Chromium (a Playwright ``Browser``), closed afterwards."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        component_missing("Playwright for Python")
    if not CHROMIUM.exists():
        component_missing(f"headless Chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def csp_refusals(page: Any) -> list[str]:
    """A list that fills with every console message of ``page`` about the Content Security Policy."""
    refused: list[str] = []

    def console(message: Any) -> None:
        if "Content Security Policy" in message.text:
            refused.append(f"{page.url}: {message.text}")

    page.on("console", console)
    return refused


def overflow(page: Any) -> int:
    """How many pixels the page is wider than its window (0 when it fits)."""
    wide, window = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    return max(0, int(wide) - int(window))


def sign_in_at_provider(page: Any, login: str, *, otp: str = "") -> None:
    """Fill and send the test provider's sign-in form (the page must be showing it)."""
    page.wait_for_selector("input[name=login]")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", str(ACCOUNTS[login]["password"]))
    page.fill("input[name=otp]", otp)
    page.click("button[type=submit]")
