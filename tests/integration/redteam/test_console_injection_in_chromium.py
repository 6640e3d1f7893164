"""Markup typed into the console runs nowhere, proven in a real headless Chromium on a real broker.

What one person types is read by others on many pages: a reason on the request, grant and audit
pages, what a refused form gives back in its fields, a filter echoed in the audit form, an id quoted
in a "not found" message. Each payload here would run script or load something if it were ever
printed as markup; the browser reports a dialog, a page error or a CSP violation if any does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from integration.web.test_console_browser import chromium, watch
from support.broker_process import Process, broker

__all__ = ["chromium"]  # the module's Chromium, shared

PAYLOADS = (
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(2)>",
    "</textarea><script>alert(3)</script>",
    '" autofocus onfocus="alert(4)',
    "javascript:alert(5)//",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    with broker(tmp_path_factory.mktemp("broker"), {}) as process:
        yield process


def signed_in(chromium: Any, server: Process, token: str) -> tuple[Any, Any, list[str], list[str]]:
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    complaints = watch(page)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{server.url}/ui/login")
    page.fill("input[name=token]", token)
    page.click("button:text-is('Sign in')")
    page.wait_for_url(f"{server.url}/ui/")
    return context, page, complaints, dialogs


def test_typed_markup_is_text_on_every_page_that_shows_it(server: Process, chromium: Any) -> None:
    context, page, complaints, dialogs = signed_in(chromium, server, server.token)
    hostile = " ".join(PAYLOADS)
    page.select_option("#ask-role", "stage-shell")
    page.fill("#ask-duration", "10m")
    page.fill("#ask-reason", hostile)
    page.click("button:text-is('Request')")
    page.wait_for_url(re.compile(r".*/ui/grants/g-[0-9a-f]+$"))
    grant = page.url
    request = page.locator("a[href^='/ui/requests/r-']").first.get_attribute("href")
    assert request is not None

    page.fill("#extend-duration", PAYLOADS[0])  # refused: the form comes back with it typed in
    page.fill("#extend-reason", PAYLOADS[3])
    page.click("button:text-is('Ask to extend')")
    assert page.input_value("#extend-duration") == PAYLOADS[0]
    assert page.input_value("#extend-reason") == PAYLOADS[3]
    page.goto(f"{server.url}/ui/")
    page.select_option("#ask-role", "stage-shell")
    page.fill("#ask-duration", PAYLOADS[2])
    page.fill("#ask-reason", PAYLOADS[1])
    page.click("button:text-is('Request')")
    assert page.input_value("#ask-reason") == PAYLOADS[1]

    filters = "&".join(f"{name}={quote(PAYLOADS[n])}" for n, name in enumerate(("role", "action", "grant")))
    visits = [
        f"{server.url}{request}",
        grant,
        f"{server.url}/ui/audit",
        f"{server.url}/ui/audit?{filters}",
        f"{server.url}/ui/audit?since={quote(PAYLOADS[4])}",
        f"{server.url}/ui/requests/{quote(PAYLOADS[0], safe='')}",
    ]
    for address in visits:
        page.goto(address)
        assert page.locator("img[src=x], svg, script:not([src])").count() == 0, address
    page.goto(f"{server.url}{request}")
    assert page.locator("dd.text").first.text_content() == hostile  # shown, as the text it is
    context.close()

    admin, page, admin_complaints, admin_dialogs = signed_in(chromium, server, server.admin_token)
    for address in (
        f"{server.url}/ui/audit",
        f"{server.url}{request}",
        grant,
        f"{server.url}/ui/admin/grants",
    ):
        page.goto(address)
        assert page.locator("img[src=x], svg, script:not([src])").count() == 0, address
    admin.close()

    refused = [c for c in complaints + admin_complaints if not re.match(r"(400|404|422) ", c)]
    assert refused == []  # no CSP violation, no script error: nothing tried to run
    assert dialogs == admin_dialogs == []
