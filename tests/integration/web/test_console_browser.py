"""The console in a real headless Chromium against a real ``jitgate server``: a grant's time left
counts down by itself, nothing on the pages breaks the CSP, the pages fit a phone's width, and a
grant that runs out while its page is open shows its new state."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import component_missing
from support.broker_process import Process, broker

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    with broker(tmp_path_factory.mktemp("broker"), {}) as process:
        yield process


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        component_missing("Playwright for Python")
    if not CHROMIUM.exists():
        component_missing("Chromium at /usr/bin/chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"]
        )
        try:
            yield browser
        finally:
            browser.close()


def watch(page: Any) -> list[str]:
    """What the page complains of: CSP violations and script errors on the console, and any of the
    broker's responses that failed (but the favicon Chromium asks for by itself)."""
    complaints: list[str] = []

    def console(message: Any) -> None:
        if (
            "Content Security Policy" in message.text
            # a failed load is caught as its response, below, where the favicon can be told apart
            or (message.type == "error" and "Failed to load" not in message.text)
        ):
            complaints.append(message.text)

    def response(answer: Any) -> None:
        if answer.status >= 400 and not answer.url.endswith("/favicon.ico"):
            complaints.append(f"{answer.status} {answer.url}")

    page.on("console", console)
    page.on("pageerror", lambda exc: complaints.append(str(exc)))
    page.on("response", response)
    return complaints


def poll(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, what
        time.sleep(0.1)  # polling the page, which changes by itself


def test_the_console_counts_down_keeps_its_csp_and_fits_a_phone(server: Process, chromium: Any) -> None:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    complaints = watch(page)

    page.goto(f"{server.url}/ui/login")
    page.fill("input[name=token]", server.token)
    page.click("button:text-is('Sign in')")
    page.wait_for_url(f"{server.url}/ui/")

    page.keyboard.press("Tab")  # the first stop from the keyboard skips the navigation
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"

    page.select_option("#ask-role", "stage-shell")
    page.fill("#ask-duration", "30m")
    page.fill("#ask-reason", "checking the console")
    page.click("button:text-is('Request')")
    page.wait_for_url(re.compile(r".*/ui/grants/g-[0-9a-f]+$"))
    grant_page = page.url

    countdown = page.locator("time[data-countdown]")
    first = countdown.text_content()
    assert first is not None
    assert re.fullmatch(r"(29m [0-9]+s|30m 0s) left", first), first
    changed = poll(lambda: countdown.text_content() != first, 3, "the countdown did not move")
    assert changed
    assert re.fullmatch(r"29m [0-9]+s left", countdown.text_content() or "")

    request_page = page.locator("a[href^='/ui/requests/r-']").first.get_attribute("href")
    pages = [f"{server.url}{path}" for path in ("/ui/", "/ui/inbox", "/ui/roles", request_page)] + [
        grant_page
    ]
    for width in (375, 1280):
        page.set_viewport_size({"width": width, "height": 800})
        for address in pages:
            page.goto(address)
            wide = page.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            )
            assert wide[0] <= wide[1], f"{address} is {wide[0]} px wide in a {wide[1]} px window"
    assert complaints == [], complaints
    context.close()


def test_a_grant_that_runs_out_while_its_page_is_open_shows_its_end(server: Process, chromium: Any) -> None:
    page = chromium.new_page()
    page.set_default_timeout(10_000)
    complaints = watch(page)
    page.goto(f"{server.url}/ui/login")
    page.fill("input[name=token]", server.token)
    page.click("button:text-is('Sign in')")
    page.wait_for_url(f"{server.url}/ui/")
    page.select_option("#ask-role", "stage-shell")
    page.fill("#ask-duration", "3s")
    page.click("button:text-is('Request')")
    page.wait_for_url(re.compile(r".*/ui/grants/g-[0-9a-f]+$"))
    assert page.locator(".state").first.text_content() == "ACTIVE"

    poll(
        lambda: page.locator("time[data-countdown]").text_content() == "expired", 6, "never shown as expired"
    )
    poll(lambda: page.locator(".state-expired").count() > 0, 10, "the page never showed the grant's end")
    assert "Revoke now" not in page.content()
    assert complaints == [], complaints
