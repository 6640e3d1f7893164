"""Single sign-on and step-up in real headless Chromium, against a real ``jitgate server`` and the
real OpenID provider, on two sites (``localhost`` and ``127.0.0.1``): what a test client cannot
show, because it sends every cookie and ignores the CSP. The provider's way back carries no
Strict cookie; a form's redirect off the site is stopped by ``form-action 'self'``; and under
``Referrer-Policy: no-referrer`` Chromium sends the console's own forms with ``Origin: null``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import component_missing
from support.broker import free_port
from support.oidcprovider import WEB_CLIENT, WEB_SECRET, start_provider, web_client
from support.ssobroker import SSO_POLICY

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """A broker at ``http://localhost:PORT`` whose console signs in at a provider on 127.0.0.1."""
    port = free_port()
    broker = f"http://localhost:{port}"
    clients = [
        web_client(
            f"{broker}/ui/oidc/callback", post_logout_redirect_uris=[f"{broker}/ui/login?error=signed_out"]
        )
    ]
    with start_provider(tmp_path / "idp", clients) as idp:
        (tmp_path / "policy.yaml").write_text(SSO_POLICY)
        env = {
            **os.environ,
            "JITGATE_PUBLIC_URL": broker,
            "JITGATE_OIDC_ISSUER": idp.issuer,
            "JITGATE_OIDC_CLIENT_ID": WEB_CLIENT,
            "JITGATE_OIDC_CLIENT_SECRET": WEB_SECRET,
        }
        command = [sys.executable, "-m", "jitgate", "server", "--data-dir", str(tmp_path / "data"),
                   "--policy", str(tmp_path / "policy.yaml"), "--listen", f"127.0.0.1:{port}"]  # fmt: skip
        with (tmp_path / "server.log").open("wb") as log:
            server = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)  # polling for the server to come up
            yield broker
        finally:
            server.terminate()
            server.wait(timeout=20)


def test_sso_sign_in_step_up_and_sign_out_work_in_chromium(site: str) -> None:
    if not Path(CHROMIUM).exists():
        component_missing("headless Chromium at /usr/bin/chromium")
    from playwright.sync_api import ConsoleMessage, sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = chromium.new_page()
            refused: list[str] = []

            def watch(message: ConsoleMessage) -> None:
                if "Content Security Policy" in message.text:
                    refused.append(message.text)

            page.on("console", watch)

            def sign_in_at_provider(otp: str = "") -> None:
                page.wait_for_selector("input[name=login]")
                page.fill("input[name=login]", "alice")
                page.fill("input[name=password]", "alice-pw")
                page.fill("input[name=otp]", otp)
                page.click("button[type=submit]")
                page.wait_for_url(f"{site}/ui/")

            page.goto(f"{site}/ui/login")
            page.click("text=Sign in with SSO")
            sign_in_at_provider()
            assert page.inner_text(".who") == "alice (oidc:alice)"  # the Strict cookie came along

            page.select_option("select[name=role]", "prod-root")
            page.fill("input[name=reason]", "INC-1")
            page.click('button:has-text("Request")')
            assert "asked for: urn:jitgate:mfa" in page.inner_text("#wants")  # at the provider
            sign_in_at_provider(otp="123456")
            assert "You signed in again" in page.inner_text("[role=status]")

            page.select_option("select[name=role]", "prod-root")
            page.fill("input[name=reason]", "INC-1")
            page.click('button:has-text("Request")')  # the form's Origin is the console's
            page.wait_for_selector("text=is PENDING")

            page.click('button:has-text("Sign out")')
            page.wait_for_url("**/session/end**")
            page.click("button >> nth=0")  # the provider asks to confirm
            page.wait_for_url(f"{site}/ui/login?error=signed_out")
            page.goto(f"{site}/ui/")
            assert page.url == f"{site}/ui/login"
            assert refused == []
        finally:
            chromium.close()
