"""The audit page in a real browser (headless Chromium) stays inside the window: long values in a
record's details wrap, and a table wider than the window scrolls inside its own box. The
browser's own form posts (signing in, "Verify now") pass the console's Origin check."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from integration.web.test_audit_page import people
from jitgate.api.app import create_app
from jitgate.clock import FrozenClock
from jitgate.runtime import Runtime
from support import component_missing

__all__ = ["people"]  # fixture shared with test_audit_page
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]


@pytest.fixture
def served(runtime: Runtime) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    app = create_app(runtime, run_scheduler=False)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            pytest.fail("the app did not start")
        time.sleep(0.05)  # polling for the server thread to listen
    yield f"http://127.0.0.1:{port}"
    verdicts = getattr(app.state, "audit_verdicts", None)
    if verdicts is not None:
        verdicts.wait(60)  # the verification the test started reads the database
    server.should_exit = True
    thread.join(timeout=20)


@pytest.mark.parametrize("width", [1280, 800])
def test_a_record_with_long_details_does_not_widen_the_page(
    runtime: Runtime, people: dict[str, str], clock: FrozenClock, served: str, width: int
) -> None:
    if not CHROMIUM.exists():
        component_missing("Chromium at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with runtime.ctx.db.write() as conn:
        runtime.ctx.audit.append(
            conn,
            at=clock.now(),
            actor="a-service-account-with-a-rather-long-name",
            action="test.wide",
            request_id="r-" + "0" * 30,
            details={"reason": "z" * 3000, "targets": [f"host-{n}.example.internal" for n in range(40)]},
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(f"{served}/ui/login")
            page.fill("input[name=token]", people["root"])
            with page.expect_navigation():
                page.click("button")
            page.goto(f"{served}/ui/audit?action=test.wide")
            assert page.locator("dl.details dd").first.inner_text() == "z" * 3000
            document = page.evaluate("document.documentElement.scrollWidth")
            assert document <= width, f"the page is {document} px wide in a {width} px window"
            box = page.locator("div.scroll").bounding_box()
            assert box is not None
            assert box["x"] + box["width"] <= width
            with page.expect_navigation():
                page.click("text=Verify now")  # a form of the page's own passes the Origin check
            assert "verification started" in page.content()
        finally:
            browser.close()
