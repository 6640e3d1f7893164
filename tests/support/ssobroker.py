"""A broker whose console signs in at the real OpenID provider (``oidcprovider.py``), for tests.

The provider calls nothing on the broker: the browser carries every answer. So the broker is a
real app behind a ``TestClient`` (its cookie jar is the browser's), and ``sso_sign_in`` walks the
whole flow: the broker's start page, the provider's sign-in page, the broker's callback.
The broker's clock is a ``FrozenClock`` set to the real time (the provider's tokens carry real
times) and moved by the tests.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import sqlalchemy as sa
from fastapi.testclient import TestClient

from jitgate.api.app import create_app
from jitgate.clock import FrozenClock
from jitgate.runtime import Runtime, build_runtime
from jitgate.settings import Settings
from jitgate.store.tables import web_sessions
from support.oidcprovider import WEB_CLIENT, WEB_SECRET, OidcProvider, sign_in, web_client

BROKER = "http://testserver"
CALLBACK = f"{BROKER}/ui/oidc/callback"
SIGNED_OUT = f"{BROKER}/ui/login?error=signed_out"
SSO_POLICY = """
targets:
  - name: web-1
    kind: ssh
    address: 127.0.0.1
roles:
  - name: prod-shell
    targets: {names: [web-1]}
    ssh: {logins: [deploy]}
    max_duration: 1h
    requesters: [group:engineers]
    approvers: [group:sre-leads]
  - name: prod-root
    targets: {names: [web-1]}
    ssh: {logins: [root]}
    max_duration: 1h
    requesters: [group:engineers]
    approvers: [group:sre-leads]
    requires: {fresh_login: 5m, acr: ["urn:jitgate:mfa"]}
  - name: prod-db
    targets: {names: [web-1]}
    ssh: {logins: [dba]}
    max_duration: 1h
    requesters: [group:engineers]
    approvers: [group:sre-leads]
    requires: {acr: ["urn:jitgate:mfa"], for: [approve]}
"""


def provider_clients() -> list[dict[str, Any]]:
    return [web_client(CALLBACK, post_logout_redirect_uris=[SIGNED_OUT])]


@dataclass
class SsoBroker:
    provider: OidcProvider
    runtime: Runtime
    clock: FrozenClock

    def browser(self) -> TestClient:
        return TestClient(create_app(self.runtime, run_scheduler=False), base_url=BROKER)


@contextmanager
def sso_broker(
    tmp: Path, provider: OidcProvider, policy: str = SSO_POLICY, **settings: Any
) -> Iterator[SsoBroker]:
    tmp.mkdir(parents=True, exist_ok=True)
    policy_file = tmp / "policy.yaml"
    policy_file.write_text(policy)
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    options: dict[str, Any] = {
        "data_dir": tmp / "data",
        "policy_file": policy_file,
        "public_url": BROKER,
        "oidc_issuer": provider.issuer,
        "oidc_client_id": WEB_CLIENT,
        "oidc_client_secret": WEB_SECRET,
        "oidc_admin_groups": ["jitgate-admins"],
        **settings,
    }
    runtime = build_runtime(Settings(**options), clock=clock)
    try:
        yield SsoBroker(provider, runtime, clock)
    finally:
        runtime.close()


def start(browser: TestClient, path: str = "/ui/oidc/start") -> str:
    """Where the broker sends the browser to sign in (the provider's authorization URL)."""
    response = browser.get(path, follow_redirects=False)
    assert response.status_code == 303, response.text
    location: str = response.headers["location"]
    return location


def sso_sign_in(
    broker: SsoBroker,
    browser: TestClient,
    login: str,
    *,
    otp: str | None = None,
    path: str = "/ui/oidc/start",
    idp: httpx.Client | None = None,
) -> httpx.Response:
    """Sign ``browser`` in at the provider as ``login``; the broker's answer at its callback.

    The broker's clock is first brought up to the real time (never back): the provider stamps its
    tokens with that, and a broker clock left behind would see them issued in the future.
    """
    broker.clock.set(max(broker.clock.now(), datetime.now(UTC)))
    back = sign_in(broker.provider, start(browser, path), login, otp=otp, browser=idp)
    assert back.startswith(CALLBACK + "?"), back
    answer: httpx.Response = browser.get(back, follow_redirects=False)
    return answer


def signed_in_at(broker: SsoBroker) -> datetime:
    """``auth_time`` of the newest console session, as the provider stated it."""
    with broker.runtime.ctx.db.read() as conn:
        rows = conn.execute(sa.select(web_sessions.c.identity).order_by(web_sessions.c.created_at)).scalars()
        identities = [json.loads(raw) if isinstance(raw, str) else raw for raw in rows]
    return datetime.fromisoformat(identities[-1]["auth_time"])


def landing(response: httpx.Response) -> str:
    """Where a page that goes on by itself (the callback's, a step-up's) sends the browser."""
    assert response.status_code == 200, response.text
    match = re.search(r'<meta http-equiv="refresh" content="0;url=([^"]+)">', response.text)
    assert match is not None, response.text
    return html.unescape(match.group(1))


def page_csrf(browser: TestClient, path: str = "/ui/") -> str:
    page = browser.get(path)
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert match is not None, page.text
    return match.group(1)


def cancel_at_provider(provider: OidcProvider, authorize_url: str) -> str:
    """Press the provider's Cancel button on its sign-in page; where it sends the browser back to."""
    with httpx.Client(timeout=10) as client:
        url = authorize_url
        for _ in range(10):
            response = client.get(url)
            if response.status_code in (302, 303):
                url = urljoin(url, response.headers["location"])
                continue
            break
        assert "/interaction/" in url, url
        response = client.post(url.rstrip("/") + "/abort")
        for _ in range(10):
            assert response.status_code in (302, 303), response.text
            url = urljoin(url, response.headers["location"])
            if not url.startswith(provider.issuer + "/"):
                return url
            response = client.get(url)
        raise AssertionError("too many redirects at the provider")
